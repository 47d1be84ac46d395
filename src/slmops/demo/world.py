"""The demo's generated world: the products, people, phrasings and replies its inquiries are made of.

``slmops.demo.generate`` composes inquiries from these parts; the demo teacher answers with ``gold_reply``.
``PROBLEMS`` holds each category's phrasings: the first half is the world at launch, the rest is what traffic
brings later (``generate``'s ``phrasing_share`` and ``shifted``).
"""

from __future__ import annotations

PRODUCTS = [
    "ワイヤレスイヤホン",
    "電気ケトル",
    "ノートPC",
    "スマートウォッチ",
    "コーヒーメーカー",
    "加湿器",
    "ランニングシューズ",
    "タブレット",
    "炊飯器",
    "モバイルバッテリー",
    "プリンター",
    "ロボット掃除機",
    "USB-Cケーブル",
    "デスクチェア",
    "空気清浄機",
    "Bluetoothスピーカー",
    "電動歯ブラシ",
    "ドライヤー",
]
SERVICES = ["プレミアム会員", "定期便", "クラウドストレージ", "動画配信プラン", "ポイントサービス", "アプリ"]
NAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田"]
CITIES = [
    ("東京都", "渋谷区神宮前"),
    ("大阪府", "大阪市北区梅田"),
    ("神奈川県", "横浜市中区山下町"),
    ("愛知県", "名古屋市中村区名駅"),
    ("福岡県", "福岡市博多区博多駅前"),
    ("北海道", "札幌市中央区北一条西"),
]

GREETINGS = [
    "",
    "",
    "お世話になっております。",
    "こんにちは。",
    "いつも利用しています。",
    "初めて問い合わせます。",
    "突然のご連絡失礼いたします。",
    "お疲れ様です。",
    "Hello.",
    "すみません、",
    "{name}と申します。",
    "いつもお世話になっております。{name}です。",
    "Hi, this is {name}.",
]
CONTEXTS = [
    "",
    "",
    "{date}に注文した{product}について。",
    "注文番号{order}の件です。",
    "{product}を使っていますが、",
    "先週購入した{product}のことで連絡しました。",
    "{service}を利用中です。",
    "会員番号{member}です。",
    "About order {order}:",
    "{date}に{service}に申し込みました。",
]

PROBLEMS = {
    "billing": [
        "請求金額が{amount}円になっていて、明細と合いません。",
        "同じ注文で二重に請求されています。",
        "{service}の料金が先月から値上がりしていますが説明がありません。",
        "領収書を発行してほしいです。",
        "クレジットカードで二回引き落とされました。",
        "請求書の宛名を会社名に変更したいです。",
        "I was charged twice for the same order.",
        "ポイントが支払いに使われていません。",
        "The invoice amount of {amount} yen looks wrong.",
        "支払い方法を銀行振込に変えたいのですが。",
        "返金された金額が{amount}円足りません。",
        "月額料金の内訳を教えてください。",
    ],
    "shipping": [
        "注文した{product}がまだ届きません。",
        "配送状況の追跡番号が更新されません。",
        "お届け先の住所を変更したいです。",
        "配達予定日を過ぎても荷物が来ません。",
        "My package has not arrived yet.",
        "別の人の荷物が届きました。",
        "配送日時を指定し直したいです。",
        "Where is my delivery? Tracking shows no update.",
        "置き配にしてほしかったのに持ち戻られました。",
        "{product}の発送はいつになりますか。",
        "配送業者を教えてください。",
        "一部の商品だけ届いていません。",
    ],
    "account": [
        "ログインできなくなりました。パスワードを忘れました。",
        "登録したメールアドレスを変更したいです。",
        "アカウントがロックされてしまいました。",
        "二段階認証のコードが届きません。",
        "I cannot log in to my account.",
        "会員情報の名前を変更したいです。",
        "退会ではなく一時停止はできますか。",
        "Please help me reset my password.",
        "別のアカウントと統合したいです。",
        "不正ログインされたかもしれません。",
        "ユーザー名を変えたいのですがどこから設定できますか。",
    ],
    "defect": [
        "届いた{product}が壊れていました。",
        "{product}の電源が入りません。",
        "箱を開けたら部品が足りませんでした。",
        "{product}から異音がします。",
        "The {product} arrived damaged.",
        "使い始めて三日で{product}が故障しました。",
        "画面にひびが入っていました。",
        "{product}が充電できなくなりました。",
        "初期不良なので交換してください。",
        "The {product} stopped working after one week.",
        "{product}のボタンが反応しません。",
    ],
    "technical": [
        "アプリが起動直後に落ちます。",
        "{product}がWi-Fiにつながりません。",
        "最新版に更新したらエラーが出ます。",
        "The app keeps crashing on my phone.",
        "{product}とスマホのペアリングができません。",
        "設定画面でエラーコード{code}が表示されます。",
        "同期が終わらず、データが反映されません。",
        "{service}の動画が再生できません。",
        "How do I update the firmware of the {product}?",
        "アプリの通知が届かなくなりました。",
        "APIの接続でタイムアウトが発生します。",
    ],
    "cancellation": [
        "注文をキャンセルしたいです。",
        "{service}を解約したいです。",
        "定期便を停止してください。",
        "I want to cancel my order {order}.",
        "申し込みを取り消したいのですが可能ですか。",
        "自動更新をやめたいです。",
        "Please cancel my subscription.",
        "{product}の注文を取り消してください。",
        "契約を今月で終了したいです。",
        "解約手続きの方法を教えてください。",
    ],
    "other": [
        "店舗の営業時間を教えてください。",
        "採用情報について知りたいです。",
        "御社の商品をSNSで紹介してもよいですか。",
        "ギフト包装はできますか。",
        "Do you have a store in Osaka?",
        "法人向けの割引はありますか。",
        "取材のお願いでご連絡しました。",
        "カタログを送ってもらえますか。",
        "新商品の発売日はいつですか。",
        "Is there a student discount?",
        "ポイントカードの特典について知りたいです。",
        "問い合わせ窓口の電話番号を知りたいです。",
    ],
}
URGENCY = {
    "urgent": [
        "至急対応してください。",
        "今すぐ何とかしてください!",
        "業務が完全に止まっています。",
        "URGENT: please help immediately.",
        "本日中に解決しないと大変困ります。",
    ],
    "high": [
        "できるだけ早く対応をお願いします。",
        "かなり困っています。",
        "明日までに回答がほしいです。",
        "Please respond as soon as possible.",
        "早めの対応をお願いします。",
    ],
    "medium": ["", "", "ご確認をお願いいたします。", "対応をお願いします。", "確認していただけますか。"],
    "low": [
        "急ぎではありません。",
        "お時間のある時で構いません。",
        "ご参考までにお知らせします。",
        "No rush.",
        "いつでも大丈夫です。",
    ],
}
PRIORITY_WEIGHTS = {  # per category: weights for urgent, high, medium, low
    "billing": (2, 3, 4, 2),
    "shipping": (2, 3, 4, 2),
    "account": (2, 3, 3, 2),
    "defect": (3, 3, 3, 1),
    "technical": (3, 3, 3, 2),
    "cancellation": (1, 2, 4, 3),
    "other": (1, 1, 3, 5),
}
CLOSINGS = [
    "",
    "",
    "よろしくお願いします。",
    "よろしくお願いいたします。",
    "Thanks.",
    "返信お待ちしています。",
    "以上です。",
]
REPLIES = {
    "billing": "お問い合わせありがとうございます。ご請求内容を確認し、担当者よりご連絡いたします。",
    "shipping": "お問い合わせありがとうございます。配送状況を確認し、改めてご連絡いたします。",
    "account": "お問い合わせありがとうございます。アカウントの状況を確認し、手順をご案内いたします。",
    "defect": "ご迷惑をおかけし申し訳ございません。交換または返品の手続きをご案内いたします。",
    "technical": "ご不便をおかけし申し訳ございません。技術担当が状況を確認し、解決方法をご案内いたします。",
    "cancellation": "お問い合わせありがとうございます。キャンセルの手続きについてご案内いたします。",
    "other": "お問い合わせありがとうございます。担当部署に確認のうえ、ご回答いたします。",
}
REPLY_SUFFIX = {"urgent": "至急対応いたします。", "high": "優先して対応いたします。", "medium": "", "low": ""}


def gold_reply(category: str, priority: str) -> str:
    return REPLIES[category] + REPLY_SUFFIX[priority]
