"""What the demo teacher knows about Japanese support inquiries: keyword weights per category and priority cues.

Usage:
    from slmops.demo.lexicon import CATEGORY_KEYWORDS, PRIORITY_CUES

Written from domain knowledge of customer support (and checked against the generated data only). Keys are
matched as substrings of the NFKC-folded, lower-cased inquiry, so short stems cover conjugations
(``届かな`` matches 届かない/届かなくて). Weights: 4-5 a word that decides the category alone, 2-3 a strong hint,
1 a hint that only breaks ties.
"""

from __future__ import annotations


def _weighted(*groups: tuple[float, str]) -> dict[str, float]:
    """``(weight, "word|word|…")`` groups -> ``{word: weight}``."""
    return {word: weight for weight, words in groups for word in words.split("|")}


CATEGORY_KEYWORDS: dict[str, dict[str, float]] = {
    "billing": _weighted(
        (
            3,
            "請求|課金|引き落|引落|領収|返金|払い戻|インボイス|督促|未払|差額|代金|ポイントが支払|"
            "charge|invoice|refund|billing|billed|請求額|overcharg|receipt",
        ),
        (
            2,
            "料金|明細|支払|決済|二重|税込|消費税|値上|金額|振込|振替|分割|クーポン|月額|年額|年払|月払|"
            "内訳|宛名|残高|送料|経費|二回引|bill |payment|paid|statement",
        ),
        (1, "値段|円|price|yen"),
    ),
    "shipping": _weighted(
        (4, "再配達|誤配"),
        (
            3,
            "届かな|届きません|届いていません|届いてない|配送|配達|発送|出荷|追跡|荷物|届け先|宅配|"
            "置き配|持ち戻|配達員|運送|送り状|別便|package|parcel|deliver|courier|tracking|ship|"
            "not arrived",
        ),
        (2, "まだ来|来ません|お届け|持ち帰|伝票|不在|郵便|営業所|梱包|段ボール|受け取|手元|着く|届く|到着|where is my"),
        (1, "届いて|arrive"),
    ),
    "account": _weighted(
        (5, "一時停止"),
        (4, "ログイン|log in|login|sign in|サインイン|パスワード|password|認証|2fa|乗っ取|hack|不正ログイン|休止"),
        (
            3,
            "アカウント|account|二段階|verification|ロック|locked|凍結|会員情報|ユーザー名|user id|"
            "username|マイページ|本人確認|権限|ニックネーム|プロフィール|profile|会員登録|連絡先を変更",
        ),
        (2, "メールアドレス|メアド|登録|統合|招待|名義|誕生日|通知設定|メルマガ|reset|sms|機種変更"),
    ),
    "defect": _weighted(
        (
            4,
            "壊れ|故障|破損|割れ|ひび|不良|電源が入|異音|欠品|部品が足り|水漏れ|焦げ|発熱|膨ら|煙|"
            "damaged|broken|broke|defective|stopped working|cracked|faulty|欠け|ほつれ|snapped",
        ),
        (
            3,
            "傷|音が出|動かな|充電できな|付属品|漏れ|熱く|剥が|はがれ|ぐらぐら|シミ|汚れ|変形|へこ|交換|"
            "保証|修理|線が入|映らな|点かな|もちません|閉まらな|crack|noise|leak|replacement|回らな|"
            "came off",
        ),
        (2, "同梱|ボタン|反応しな|つかな|持たな|液晶|中身が違|サイズが違|不具合|初期"),
    ),
    "technical": _weighted(
        (
            4,
            "エラー|error|クラッシュ|crash|フリーズ|再生できな|ペアリング|pair|同期|sync|firmware|"
            "ファームウェア|api|タイムアウト|timeout|インストール|install|文字化け|ドライバ|バグ|bug",
        ),
        (
            3,
            "落ちる|落ちます|落ちて|起動|固ま|接続|つながらな|繋がらな|つながりません|wi-fi|wifi|"
            "アップデート|更新したら|ブラウザ|browser|通知|notification|ダウンロード|連携|"
            "対応していません|ios|android|ネットワーク|ルーター|読み込|ダークモード|使い方|認識|"
            "アップロード|upload|unresponsive|バージョン|version|ページが開|操作できな",
        ),
        (2, "app |設定|update|表示され|サーバ|データ|回線|ソフト|画面が固ま"),
        (1, "アプリ|再生|bluetooth"),
    ),
    "cancellation": _weighted(
        (5, "キャンセル|解約|cancel"),
        (4, "退会|取り消|取消|やめたい|なかったことに|terminate|unsubscribe|stop my"),
        (
            3,
            "辞め|停止|中止|終了したい|終わりにしたい|自動更新|抜けたい|外したい|違約金|要らなくなった|"
            "いらなくなった|やめる|quit",
        ),
        (2, "止めたい|止めて|申し込みを取"),
    ),
    "other": _weighted(
        (
            4,
            "営業時間|営業日|採用|求人|アルバイト|取材|カタログ|発売日|見積|卸|ギフト包装|ラッピング|"
            "gift wrap|寄付|チャリティ",
        ),
        (
            3,
            "店舗|募集|sns|インスタ|新商品|大口|包装|特典|見学|ロゴ|お礼|感謝|セール|レビュー|"
            "リサイクル|どこの国|原産|vegan|spec sheet|仕様書|提携|協業|ポイントカード|イベント|"
            "キャンペーン",
        ),
        (2, "store|割引|discount|電話番号|窓口|紹介|sale|回収|資料|do you have|do you offer|在庫"),
        (1, "法人|is there"),
    ),
}

# A cancellation that already happened ("解約したのに…") is usually a complaint about something else.
PAST_CANCELLATION = ("解約済", "解約した", "キャンセル済", "キャンセルした", "退会した", "cancelled", "canceled")

# Negated urgency ("急ぎではありません") is a low-priority cue and must not read as urgency.
NEGATED_URGENCY = r"(至急|緊急|急ぎ|急い)(では|じゃ|で)(ない|なく|ありません|いません)"

# What the inquiry is about, when it says nothing of urgency: a possible break-in or a safety hazard is high.
RISK_CUES = ("乗っ取", "hacked", "不正ログイン", "不正アクセス", "発火", "火事", "煙", "危険", "膨ら", "感電")

PRIORITY_CUES: dict[str, tuple[str, ...]] = {  # checked in this order; the first level with a hit wins
    "urgent": (
        "至急",
        "今すぐ",
        "いますぐ",
        "今日中",
        "本日中",
        "緊急",
        "業務が止",
        "業務が完全に止",
        "完全に止ま",
        "全部止ま",
        "urgent",
        "immediately",
        "right now",
        "emergency",
        "今日で",
    ),
    "high": (
        "できるだけ早",
        "出来るだけ早",
        "早めに",
        "早めの",
        "早急",
        "急ぎで",
        "急いで",
        "困って",
        "困る",
        "困ります",
        "明日まで",
        "明日中",
        "今週中",
        "asap",
        "as soon as possible",
        "soon",
        "いい加減",
        "何度も",
        "仕事で使",
    ),
    "low": (
        "急ぎません",
        "急ぎではありません",
        "お時間のある",
        "時間のある時",
        "参考までに",
        "no rush",
        "not urgent",
        "いつでも",
        "念のため",
        "一応",
        "検討中",
        "で構いません",
        "でも構いません",
        "で大丈夫",
        "でも大丈夫",
        "ついでに",
    ),
}
