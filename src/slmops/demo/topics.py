"""The demo teacher's topic bank: what it knows per category, as situations and noun topics it can write about.

Usage:
    from slmops.demo.topics import topic_sentence
    topic_sentence("billing", seed=1234)   # -> "口座振替の件で連絡しました。確認してもらえますか。"

The phrase bank (``phrasebank.py``) holds a few whole problems per category; a teacher LLM knows far more
of its domain than that. This bank is written from the teacher's own lexicon (``lexicon.py``): each entry
names something its keywords cover, so the inputs it writes carry what it knows, not the generator's
phrasings. Frames and follow-ups are shared by every category, so only the topic tells the category.
Every entry is labelled its own category by the teacher's rules (``tests/test_demo_topics.py``).
"""

from __future__ import annotations


def _split(words: str) -> tuple[str, ...]:
    return tuple(words.split("|"))


SITUATIONS: dict[str, tuple[str, ...]] = {
    "billing": (
        "同じ注文で二重に課金されています。",
        "先月より請求額がかなり高くなっています。",
        "返金がまだ口座に振り込まれていません。",
        "領収書を再発行してほしいです。",
        "支払い済みなのに督促のメールが来ました。",
        "カードの決済が何度やっても失敗します。",
        "請求書の金額が注文した時の金額と違います。",
        "クーポンが適用されずに全額請求されました。",
        "消費税が二重にかかっている気がします。",
        "分割払いに変更できますか。",
        "ポイントが支払いに使われていませんでした。",
        "代金を払ったのに未払いの扱いになっています。",
        "返品した分の払い戻しはいつになりますか。",
        "年払いに切り替えた後の料金がよく分かりません。",
        "I was charged twice for the same order.",
        "The refund has not reached my card yet.",
        "同じ月に二回引き落とされていました。",
        "I think I was overcharged on my last bill.",
        "税込の金額のはずが別に税金を請求されました。",
        "振込先の口座を教えてください。",
        "月払いの明細はどこで見られますか。",
        "Can I get a receipt for my payment?",
        "The payment went through, but the order says unpaid.",
        "口座から引落された金額が合いません。",
    ),
    "shipping": (
        "注文した荷物がまだ届かないです。",
        "一週間経っても商品が届きません。",
        "追跡番号で調べても何も出てきません。",
        "配達完了になっていますが受け取っていません。",
        "隣の家に誤配されたようです。",
        "不在だったので再配達をお願いしたいです。",
        "届け先の住所を間違えて入力してしまいました。",
        "発送がいつになるのか知りたいです。",
        "置き配を頼んだのに持ち戻りになっていました。",
        "営業所で荷物を受け取ることはできますか。",
        "出荷済みの連絡から何日も動きがありません。",
        "別便で送られた商品がまだ来ません。",
        "配達員さんが指定した時間に来ませんでした。",
        "海外への発送はしてもらえますか。",
        "The parcel has not arrived yet.",
        "The courier says it was delivered, but I have nothing.",
        "注文した品がまだ手元に届いていません。",
        "配達員さんが荷物を持ち帰ってしまいました。",
        "郵便で送ってもらうことはできますか。",
        "梱包の段ボールが破れた状態で着きました。",
        "いつ頃着くのか教えてください。",
        "Where is my order? It was supposed to ship last week.",
        "明日までに届くか心配です。",
        "頼んだ本がまだ届いてないです。",
    ),
    "account": (
        "パスワードを忘れてログインできません。",
        "二段階認証のコードが送られてきません。",
        "アカウントがロックされてしまいました。",
        "知らない端末から不正ログインされた形跡があります。",
        "登録したメールアドレスを新しいものにしたいです。",
        "ユーザー名を変えることはできますか。",
        "本人確認の書類はどこから出せばいいですか。",
        "アカウントが乗っ取られたかもしれません。",
        "家族のアカウントと統合したいです。",
        "機種変更したらサインインできなくなりました。",
        "パスワードを再発行するメールが来ません。",
        "アカウントを一時停止したいです。",
        "マイページに入ると別の人の名前が出てきます。",
        "会員登録の確認メールが見当たりません。",
        "I can't log in to my account.",
        "I forgot my password and the link has expired.",
        "Login fails with my usual password.",
        "2FA codes stopped coming to my phone.",
        "My account was hacked.",
        "アカウントを休止する方法を知りたいです。",
        "アカウントが凍結されたとメールが来ました。",
        "ニックネームを変更したいです。",
        "メアドを変えたので登録し直したいです。",
        "会員情報の誕生日を登録し忘れました。",
        "I forgot my username.",
        "管理者の権限を別の人に移したいです。",
        "The verification email never arrived.",
    ),
    "defect": (
        "届いた時点で本体が壊れていました。",
        "使い始めてすぐに故障しました。",
        "急に電源が入らなくなりました。",
        "画面にひびが入っていました。",
        "動かすと変な異音がします。",
        "本体の下から水漏れしています。",
        "充電できなくなってしまいました。",
        "部品が足りなくて組み立てられません。",
        "箱を開けたらガラスが割れていました。",
        "塗装がもう剥がれてきました。",
        "使っていると本体が熱くなって焦げたにおいがします。",
        "保証期間内なので修理をお願いしたいです。",
        "ふたがぐらぐらしてきちんと閉まらない状態です。",
        "付属品が一つ入っていませんでした。",
        "The lid arrived cracked.",
        "It stopped working after two days.",
        "バッテリーが膨らんできました。",
        "電源を入れると発熱して煙が出ました。",
        "The blender arrived damaged.",
        "This charger is faulty.",
        "スピーカーから音が出ません。",
        "モーターが動かなくなりました。",
        "シャツに汚れとシミが付いていました。",
        "テレビの画面に線が入って映らないことがあります。",
        "バッテリーが一日ももたないのは故障でしょうか。",
        "The bottle has a leak.",
        "サイズが違う商品が同梱されていました。",
        "I need a replacement, the strap came off.",
    ),
    "technical": (
        "アプリを起動してもすぐ落ちます。",
        "画面が固まって何も操作できなくなります。",
        "アップデートしてからエラーが出るようになりました。",
        "Wi-Fiにつながらなくなりました。",
        "イヤホンとのペアリングがうまくいきません。",
        "同期が途中で止まってしまいます。",
        "インストールの途中でエラーになります。",
        "ページの読み込みがとても遅いです。",
        "動画が再生できない状態です。",
        "メールが文字化けして読めません。",
        "APIを呼ぶとタイムアウトになります。",
        "新しいバージョンにしてから動作が重いです。",
        "パソコンがプリンターを認識しません。",
        "ダークモードの切り替え方が分かりません。",
        "The app keeps crashing on startup.",
        "I get an error when I upload a file.",
        "アプリがクラッシュします。",
        "I can't pair my earbuds with my phone.",
        "The firmware update failed.",
        "検索画面にバグがあるようです。",
        "iOSのアプリから通知が来ません。",
        "Androidで動画をアップロードできません。",
        "サーバに繋がらない時間帯があります。",
        "ページが開かないことがよくあります。",
        "カレンダーとの連携がうまくいきません。",
        "この機種には対応していませんと表示されます。",
        "The app becomes unresponsive after a few minutes.",
        "Wi-Fiの回線が不安定で接続が切れます。",
    ),
    "cancellation": (
        "定期便を今月で解約させてください。",
        "自動更新を止めたいです。",
        "申し込みを取り消してもらえますか。",
        "このサービスはやめたいと考えています。",
        "有料会員を辞めたいです。",
        "もう要らなくなったので注文を取り消したいです。",
        "契約を途中で終わりにしたいです。",
        "来月分から購読を停止してください。",
        "予約をなかったことにしてほしいです。",
        "プランの解約方法を教えてください。",
        "注文のキャンセルはまだ間に合いますか。",
        "退会の手続きがどこにあるか分かりません。",
        "Please cancel my order.",
        "I want to unsubscribe from the monthly plan.",
        "会員をやめる手続きを教えてください。",
        "Please terminate my contract.",
        "I want to quit the premium plan.",
        "メンバーシップを終了したいです。",
        "グループから抜けたいのですが。",
        "オプションを外したいです。",
        "もういらなくなったので定期便を止めてください。",
        "申込を取消したいです。",
    ),
    "other": (
        "年末年始の営業時間を教えてください。",
        "御社で働きたいので求人について知りたいです。",
        "雑誌の取材をお願いできますか。",
        "新商品の発売日はいつですか。",
        "大口で注文する場合の見積もりがほしいです。",
        "プレゼント用にラッピングしてもらえますか。",
        "近くに店舗はありますか。",
        "工場見学は受け付けていますか。",
        "いつもの対応に感謝を伝えたくて連絡しました。",
        "このお菓子はvegan向けですか。",
        "次のセールはいつ頃ですか。",
        "使わなくなった製品の回収はしていますか。",
        "協業のご提案をさせていただきたいです。",
        "Do you have a catalog for business customers?",
        "週末は営業日ですか。",
        "カタログを送っていただけますか。",
        "Do you offer gift wrap?",
        "チャリティへの協賛をお願いしたいです。",
        "インスタのフォロワー特典はありますか。",
        "商品のレビューを書いたらお礼はありますか。",
        "この商品はどこの国で作られていますか。",
        "Could you send me a spec sheet?",
        "法人向けの割引はありますか。",
        "お客様窓口の電話番号を教えてください。",
        "Is there a sale next month?",
    ),
}
NOUNS: dict[str, tuple[str, ...]] = {  # noun topics, '|'-separated
    "billing": _split(
        "今月の請求|クレジットカードの引き落とし|領収書の発行|返金|インボイス|督促状|未払いの料金|差額の返金|"
        "利用料金の内訳|支払い方法|二重請求|値上げ後の料金|口座振替|月額料金|年額プランの代金|領収書の宛名|ポイント残高|"
        "the invoice|my billing statement"
    ),
    "shipping": _split(
        "荷物の配送状況|再配達|配達日時|追跡番号|発送予定日|出荷状況|届け先の変更|置き配|宅配ボックスへの配達|送り状|"
        "別便の荷物|配達員の対応|運送会社|荷物の到着予定|誤配|伝票番号|不在票|my package|"
        "the delivery"
    ),
    "account": _split(
        "ログイン|パスワードの再設定|二段階認証|アカウントのロック|会員情報|ユーザー名|マイページ|本人確認|"
        "登録メールアドレス|プロフィール|会員登録|アカウントの統合|招待メール|名義|SMS認証|my account|"
        "the sign in page"
    ),
    "defect": _split(
        "商品の破損|初期不良|本体の故障|部品の欠品|付属品|液晶の不具合|製品の保証|修理|不良品の交換|本体の傷|水漏れ|"
        "異音|a broken item|a defective unit"
    ),
    "technical": _split(
        "アプリのエラー|画面のフリーズ|ソフトのインストール|アップデート|ファームウェア|Wi-Fi接続|"
        "Bluetoothのペアリング|データの同期|APIの仕様|タイムアウト|文字化け|ドライバのダウンロード|ブラウザ|"
        "ネットワーク|ルーターとの接続|アプリの使い方|the app crash|a sync error"
    ),
    "cancellation": _split(
        "注文のキャンセル|定期購入の解約|退会|自動更新の停止|サブスクリプションの解約|申し込みの取り消し|契約の中止|違約金|"
        "予約のキャンセル|cancelling my subscription"
    ),
    "other": _split(
        "営業時間|採用|アルバイトの募集|取材|新商品の発売日|法人向けの見積もり|卸売り|ギフト包装|店舗の場所|"
        "SNSのキャンペーン|工場見学|ロゴの使用|商品の原産国|リサイクル|イベントの予定|協業|ポイントカード|寄付|"
        "your store hours"
    ),
}
NOUN_FRAMES = (
    "{}について質問があります。",
    "{}の件で連絡しました。",
    "{}のことで相談させてください。",
    "{}について確認したいです。",
    "{}はどうなっていますか。",
    "{}について教えてもらえますか。",
    "{}の件、どうすればいいでしょうか。",
    "{}について問い合わせです。",
)
ENGLISH_FRAMES = ("I have a question about {}.", "Question about {}, please.", "Regarding {}: can you help?")
FOLLOW_UPS = (
    "",
    "",
    "",
    "どうすればいいですか。",
    "確認してもらえますか。",
    "対応をお願いします。",
    "教えてください。",
)


def framed_nouns(category: str) -> list[str]:
    """Every noun topic of ``category`` in every frame that fits its script."""
    return [
        frame.format(noun) for noun in NOUNS[category] for frame in (ENGLISH_FRAMES if noun.isascii() else NOUN_FRAMES)
    ]


def topic_sentence(category: str, seed: int) -> str:
    """A situation of ``category`` with a follow-up, or a noun topic in a frame, picked by ``seed``."""
    situations, nouns = SITUATIONS[category], NOUNS[category]
    pick = (seed // 11) % (len(situations) + len(nouns))
    if pick < len(situations):
        return situations[pick] + FOLLOW_UPS[(seed // 5) % len(FOLLOW_UPS)]
    noun = nouns[pick - len(situations)]
    frames = ENGLISH_FRAMES if noun.isascii() else NOUN_FRAMES
    return frames[(seed // 3) % len(frames)].format(noun)
