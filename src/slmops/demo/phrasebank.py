"""The demo teacher's phrase bank for self-instruct: new inquiries per category, broader than the generator's.

Usage:
    from slmops.demo.phrasebank import compose
    compose("shipping", seed=1234)   # -> "お疲れさまです。週末に頼んだ登山靴、…"

Openings, problems and closings are the teacher's own wording (not the generator's templates); an inquiry is
one of each, picked by ``seed``, so the same request always gets the same text. The problem is one of the
few whole ones below or, more often, a topic from what the teacher knows (``topics.py``).
"""

from __future__ import annotations

from slmops.demo.topics import NOUNS, SITUATIONS, topic_sentence

OPENINGS = (
    "",
    "",
    "お疲れさまです。",
    "度々すみません。",
    "夜分に失礼します。",
    "ちょっと聞きたいんですが、",
    "Hello, ",
    "前にも問い合わせたのですが、",
    "いつも楽しく使わせてもらってます。",
    "はじめまして。",
)
PROBLEMS: dict[str, tuple[str, ...]] = {
    "billing": (
        "今月の請求額が先月の倍くらいになってて驚きました。内訳を知りたいです。",
        "セール価格で買ったのに、定価で決済されていました。差額を返してもらえますか。",
        "銀行の通帳に見覚えのない引き落としが二件あります。",
        "返品は受け付けたと連絡をもらったのに、返金がまだ口座に入っていません。",
        "見積もりと実際の請求額が合いません。",
        "会社の経費で落とすので、領収書の但し書きを変えてほしいです。",
        "I think I was billed for the annual plan instead of the monthly one.",
        "送料無料のはずが送料が加算されていました。",
    ),
    "shipping": (
        "週末に頼んだ登山靴、配送状況がずっと『準備中』のままです。",
        "不在票が入っていたので再配達をお願いしたいのですが、どこから頼めますか。",
        "配達完了になっているのに、荷物が見当たりません。",
        "届け先をマンション名まで書き忘れました。発送前に直せますか。",
        "the tracking number you sent me doesn't work on the courier's site",
        "まとめて注文した本のうち一冊だけまだ発送されていないようです。",
        "配送業者の方が玄関先に置いていったみたいで、雨で箱が濡れていました。",
        "来週から出張なので、お届けを月末にずらしてもらえますか。",
    ),
    "account": (
        "ログインしようとすると『IDまたはパスワードが違います』と出ます。",
        "登録しているメールアドレスがもう使えないので、連絡先を変更したいです。",
        "アカウントに知らない住所が登録されていて、不正アクセスが心配です。",
        "認証コードを入力しても先に進めません。",
        "I'd like to change the name on my account profile.",
        "家族と共有しているアカウントを分けたいのですが。",
        "マイページの会員ランクが正しく表示されていない気がします。",
        "パスワードを変更したら、他の端末からサインインできなくなりました。",
    ),
    "defect": (
        "届いた扇風機の羽根が一枚欠けていました。",
        "電子レンジのターンテーブルが回らなくなりました。保証期間内です。",
        "新品のジーンズの縫い目がほつれていました。交換をお願いします。",
        "体重計の表示がおかしく、毎回違う数字になります。故障でしょうか。",
        "the handle of the suitcase snapped off on the first trip",
        "照明のスイッチを入れてもチカチカして点かないことがあります。不良品だと思います。",
        "炊飯器の内釜のコーティングがもう剥がれてきました。",
        "箱から出したら本体に大きな傷とへこみがありました。",
    ),
    "technical": (
        "アプリにログインした直後に画面が固まって操作できなくなります。",
        "テレビとスティック端末をつないでも映像が出ず、エラー表示になります。",
        "ソフトウェアのアップデートが途中で止まって進みません。",
        "スマートスピーカーがネットワークに接続できませんと言います。",
        "the desktop app won't sync my files since the latest version",
        "サイトの検索ボタンを押してもページが読み込まれません。",
        "カメラのアプリでWi-Fi転送の設定方法がわかりません。",
        "ブラウザでマイページを開くとエラーになります。キャッシュは消しました。",
    ),
    "cancellation": (
        "昨日申し込んだオンライン英会話のプランをキャンセルしたいです。",
        "雑誌の定期購読を今号限りでやめたいです。",
        "注文確定後にサイズを間違えたことに気付いたので、注文を取り消してほしいです。",
        "有料オプションを解約したいのですが、どの画面からできますか。",
        "please cancel the extra warranty I added by mistake",
        "引っ越し先では使えないので、レンタル契約を解約させてください。",
        "無料体験だけのつもりだったので、本契約になる前に退会したいです。",
        "二重に注文してしまったので片方をキャンセルしてください。",
    ),
    "other": (
        "御社の製品を扱っている販売店を教えてください。",
        "社内研修で御社の事例を紹介してもいいでしょうか。",
        "商品の在庫が復活する予定はありますか。",
        "母の日のプレゼントにラッピングをお願いしたいです。",
        "do you have any job openings for engineers?",
        "環境への取り組みについて、資料があれば送ってください。",
        "来月のキャンペーンの詳細はいつ発表されますか。",
        "展示会に出展される予定はありますか。",
    ),
}
URGENCY = {
    "urgent": ("至急お願いします。", "今日中に何とかしてください。"),
    "high": ("早めに対応してもらえると助かります。", "困っています。"),
    "medium": ("", "", "確認お願いします。"),
    "low": ("急ぎませんので、ついでの時に。", "参考までに。"),
}
CLOSINGS = (
    "",
    "",
    "よろしくです。",
    "ご対応よろしくお願い申し上げます。",
    "Thanks in advance.",
    "以上、お願いします。",
)


def compose(category: str, seed: int) -> str:
    """One inquiry of ``category``, picked deterministically by ``seed`` (raises KeyError for an unknown one)."""
    problems = PROBLEMS[category]
    pick = (seed // 7) % (len(problems) + len(SITUATIONS[category]) + len(NOUNS[category]))
    levels = tuple(URGENCY)
    parts = [
        OPENINGS[seed % len(OPENINGS)],
        problems[pick] if pick < len(problems) else topic_sentence(category, seed),
        URGENCY[levels[(seed // 61) % len(levels)]][(seed // 263) % 2],
        CLOSINGS[(seed // 1031) % len(CLOSINGS)],
    ]
    text = ""
    for part in (p for p in parts if p):
        text += (" " if text and text[-1].isascii() and text[-1] not in " " else "") + part
    return text
