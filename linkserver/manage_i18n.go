package linkserver

import "time"

// manageText holds the sentences of the sender's manage page, one per
// language (catalog.Lang).
type manageText struct {
	Title, Subject, NoSubject, Sent, Sender, Recipients             string
	Files, FileName, Size, SHA256, Expires, State, Downloads        string
	StateActive, StateRevoked, StateExpired, StateLimit             string
	Accesses, NoAccesses, When, What, Who, From                     string
	KindView, KindDownload, Unverified                              string
	RevokeFile, RevokeAll, RevokeAllNote                            string
	ChangeExpiry, NewExpiry, ExpiryNote, ExpiryLocked, ExpiryButton string
	Kept, Back                                                      string
	Done                                                            map[string]string
	Refused                                                         map[string]string
	RefusedTitle                                                    string
	shortTime                                                       func(time.Time) string
}

var manageTexts = map[string]*manageText{
	"en": {
		Title: "Your sent files", Subject: "Subject", NoSubject: "(no subject)", Sent: "Sent",
		Sender: "Sender", Recipients: "Recipients",
		Files: "Files", FileName: "File name", Size: "Size", SHA256: "SHA-256", Expires: "Available until",
		State: "State", Downloads: "Downloads",
		StateActive: "available", StateRevoked: "withdrawn on %s", StateExpired: "expired on %s", StateLimit: "download limit reached",
		Accesses: "Views and downloads", NoAccesses: "Nobody has opened this file yet.",
		When: "Time", What: "What", Who: "Recipient", From: "Client address",
		KindView: "viewed", KindDownload: "downloaded", Unverified: "not verified",
		RevokeFile: "Withdraw this file", RevokeAll: "Withdraw all files",
		RevokeAllNote: "Withdrawn links stop working at once; this cannot be undone.",
		ChangeExpiry:  "Change the expiry", NewExpiry: "Available until (%s)",
		ExpiryNote:   "Any time from now until %s.",
		ExpiryLocked: "The files have expired; their expiry can no longer be changed.",
		ExpiryButton: "Change expiry",
		Kept:         "The newest %d views and downloads of this message are kept, as long as its files.",
		Back:         "Back to the manage page",
		Done: map[string]string{
			"revoked":     "The file was withdrawn. Its link no longer works.",
			"revoked-all": "All files were withdrawn. Their links no longer work.",
			"expiry":      "The expiry was changed.",
		},
		RefusedTitle: "Not changed",
		Refused: map[string]string{
			"csrf":          "The change could not be confirmed. Reload the manage page and try again. Cookies must be allowed for this site.",
			"unknown link":  "That file is not part of this message.",
			"bad action":    "This action is not known.",
			"bad expiry":    "The new expiry is not a valid date and time.",
			"past expiry":   "The new expiry must be in the future.",
			"beyond max":    "The new expiry is later than the longest time files may be kept (%s).",
			"expired":       "The files have expired; their expiry can no longer be changed.",
			"store refused": "The change could not be saved. Please try again later.",
		},
		shortTime: func(t time.Time) string { return t.Format("2006-01-02 15:04:05 MST") },
	},
	"ja": {
		Title: "送信したファイル", Subject: "件名", NoSubject: "(件名なし)", Sent: "送信日時",
		Sender: "送信者", Recipients: "宛先",
		Files: "ファイル", FileName: "ファイル名", Size: "サイズ", SHA256: "SHA-256", Expires: "有効期限",
		State: "状態", Downloads: "ダウンロード回数",
		StateActive: "有効", StateRevoked: "%s に取り消し済み", StateExpired: "%s に期限切れ", StateLimit: "ダウンロード回数の上限に達しました",
		Accesses: "閲覧とダウンロード", NoAccesses: "このファイルはまだ開かれていません。",
		When: "日時", What: "操作", Who: "受信者", From: "接続元",
		KindView: "閲覧", KindDownload: "ダウンロード", Unverified: "未確認",
		RevokeFile: "このファイルを取り消す", RevokeAll: "すべてのファイルを取り消す",
		RevokeAllNote: "取り消したリンクはすぐに使えなくなります。元に戻せません。",
		ChangeExpiry:  "有効期限の変更", NewExpiry: "新しい有効期限 (%s)",
		ExpiryNote:   "現在から %s までの日時を指定できます。",
		ExpiryLocked: "ファイルの有効期限が切れたため、変更できません。",
		ExpiryButton: "有効期限を変更",
		Kept:         "このメールの閲覧とダウンロードは新しいものから %d 件まで、ファイルがある間だけ保存されます。",
		Back:         "管理ページに戻る",
		Done: map[string]string{
			"revoked":     "ファイルを取り消しました。リンクは使えなくなりました。",
			"revoked-all": "すべてのファイルを取り消しました。リンクは使えなくなりました。",
			"expiry":      "有効期限を変更しました。",
		},
		RefusedTitle: "変更されませんでした",
		Refused: map[string]string{
			"csrf":          "変更を確認できませんでした。管理ページを読み込み直してから、もう一度お試しください。このサイトの Cookie を許可する必要があります。",
			"unknown link":  "そのファイルはこのメールのものではありません。",
			"bad action":    "この操作は使えません。",
			"bad expiry":    "新しい有効期限が正しい日時ではありません。",
			"past expiry":   "新しい有効期限には未来の日時を指定してください。",
			"beyond max":    "新しい有効期限が、ファイルを保管できる最長期間 (%s) を超えています。",
			"expired":       "ファイルの有効期限が切れたため、変更できません。",
			"store refused": "変更を保存できませんでした。しばらくしてからもう一度お試しください。",
		},
		shortTime: func(t time.Time) string { return t.Format("2006-01-02 15:04:05 MST") },
	},
}

func manageTextFor(c *catalog) *manageText {
	if m, ok := manageTexts[c.Lang]; ok {
		return m
	}
	return manageTexts["en"]
}
