package linkserver

import (
	"fmt"
	"net/http"
	"time"

	"golang.org/x/text/language"

	"github.com/attachgate/attachgate/bytesize"
)

// catalog holds every sentence a page shows, in one language.
type catalog struct {
	Lang string // BCP 47 tag for <html lang> and Content-Language

	LandingTitle  string
	FileName      string
	Size          string
	Sender        string
	Expires       string
	SHA256        string
	DownloadsLeft string
	Download      string
	LandingNote   string
	NoSender      string

	bytesWord  string
	formatTime func(time.Time) string
	errors     map[pageKind]errorText
}

// errorText is the title and the human sentences of an error page.
type errorText struct {
	Title   string
	Message string
	// Next says what the reader can do; may be empty.
	Next string
	// MessageAt replaces Message when the page knows when the link
	// stopped working; %s is that time.
	MessageAt string
}

var english = &catalog{
	Lang:          "en",
	LandingTitle:  "File download",
	FileName:      "File name",
	Size:          "Size",
	Sender:        "Sender",
	Expires:       "Available until",
	SHA256:        "SHA-256",
	DownloadsLeft: "Downloads left",
	Download:      "Download",
	LandingNote:   "The download starts when you press the button. You can compare the SHA-256 above with that of the saved file.",
	NoSender:      "(none)",
	bytesWord:     "bytes",
	formatTime: func(t time.Time) string {
		return t.Format("Monday, 2 January 2006, 15:04 MST") + " (UTC" + t.Format("-07:00") + ")"
	},
	errors: map[pageKind]errorText{
		pageNotFound:         {Title: "Link not found", Message: "This link does not exist. Check that you copied the whole link from the mail."},
		pageExpired:          {Title: "Link expired", Message: "This link has expired.", MessageAt: "This link expired on %s.", Next: "The file can no longer be downloaded here. If you still need it, ask the sender to send it again."},
		pageRevoked:          {Title: "Link withdrawn", Message: "The sender has withdrawn this link; it can no longer be used.", MessageAt: "The sender withdrew this link on %s; it can no longer be used.", Next: "If you still need the file, ask the sender."},
		pageLimitReached:     {Title: "Download limit reached", Message: "This link has been used as many times as allowed.", Next: "If you still need the file, ask the sender for a new link."},
		pageFileGone:         {Title: "File no longer available", Message: "This file has been deleted and can no longer be downloaded.", Next: "If you still need it, ask the sender to send it again."},
		pageCSRF:             {Title: "Download not confirmed", Message: "The download could not be confirmed. Open the link from the mail again and press Download. Cookies must be allowed for this site."},
		pageURLTimedOut:      {Title: "Link timed out", Message: "This download address has timed out. Go back to the landing page (the link in the mail) and press Download again."},
		pageMethodNotAllowed: {Title: "Not supported", Message: "This kind of request is not supported here."},
		pageInternal:         {Title: "Something went wrong", Message: "Something went wrong on our side. Please try again later."},
		pageUnavailable:      {Title: "Temporarily unavailable", Message: "The service is temporarily unavailable. Please try again in a few minutes."},
		pageTooManyRequests:  {Title: "Too many requests", Message: "Too many refused requests came from your network. Please wait a minute and try again."},
	},
}

var japanese = &catalog{
	Lang:          "ja",
	LandingTitle:  "ファイルのダウンロード",
	FileName:      "ファイル名",
	Size:          "サイズ",
	Sender:        "送信者",
	Expires:       "有効期限",
	SHA256:        "SHA-256",
	DownloadsLeft: "残りダウンロード回数",
	Download:      "ダウンロード",
	LandingNote:   "ボタンを押すとダウンロードが始まります。保存したファイルの SHA-256 を上の値と照合できます。",
	NoSender:      "(なし)",
	bytesWord:     "バイト",
	formatTime: func(t time.Time) string {
		return fmt.Sprintf("%d年%d月%d日(%s) %s (UTC%s)",
			t.Year(), int(t.Month()), t.Day(), japaneseWeekdays[t.Weekday()],
			t.Format("15:04 MST"), t.Format("-07:00"))
	},
	errors: map[pageKind]errorText{
		pageNotFound:         {Title: "リンクが見つかりません", Message: "このリンクは存在しません。メールに記載されたリンクを最後まで正しくコピーしたかご確認ください。"},
		pageExpired:          {Title: "有効期限切れ", Message: "このリンクは有効期限が切れています。", MessageAt: "このリンクは %s に有効期限が切れました。", Next: "このファイルはここからはダウンロードできません。必要な場合は、送信者に再送を依頼してください。"},
		pageRevoked:          {Title: "リンクは取り消されました", Message: "このリンクは送信者によって取り消されたため、使用できません。", MessageAt: "このリンクは %s に送信者によって取り消されたため、使用できません。", Next: "ファイルが必要な場合は、送信者にお問い合わせください。"},
		pageLimitReached:     {Title: "ダウンロード回数の上限", Message: "このリンクはダウンロード回数の上限に達しました。", Next: "ファイルが必要な場合は、送信者に新しいリンクを依頼してください。"},
		pageFileGone:         {Title: "ファイルは削除されました", Message: "このファイルは削除されたため、ダウンロードできません。", Next: "必要な場合は、送信者に再送を依頼してください。"},
		pageCSRF:             {Title: "ダウンロードを確認できません", Message: "ダウンロードを確認できませんでした。メールのリンクを開き直し、もう一度「ダウンロード」を押してください。このサイトの Cookie を許可する必要があります。"},
		pageURLTimedOut:      {Title: "リンクの時間切れ", Message: "このダウンロード用アドレスは時間切れです。ダウンロードページ(メールのリンク)に戻り、もう一度「ダウンロード」を押してください。"},
		pageMethodNotAllowed: {Title: "対応していません", Message: "この種類のリクエストには対応していません。"},
		pageInternal:         {Title: "エラーが発生しました", Message: "サーバーで問題が発生しました。しばらくしてからもう一度お試しください。"},
		pageUnavailable:      {Title: "一時的に利用できません", Message: "一時的にサービスを利用できません。数分後にもう一度お試しください。"},
		pageTooManyRequests:  {Title: "リクエストが多すぎます", Message: "お使いのネットワークから拒否されたリクエストが多すぎます。1 分ほど待ってから、もう一度お試しください。"},
	},
}

var japaneseWeekdays = [...]string{"日", "月", "火", "水", "木", "金", "土"}

// catalogs is in the order of supportedLanguages; the first is the default.
var (
	catalogs           = []*catalog{english, japanese}
	supportedLanguages = []language.Tag{language.English, language.Japanese}
	languageMatcher    = language.NewMatcher(supportedLanguages)
)

// catalogFor picks English or Japanese by Accept-Language; English when
// the header is missing, malformed or asks for neither.
func catalogFor(r *http.Request) *catalog {
	header := r.Header.Get("Accept-Language")
	if header == "" {
		return english
	}
	tags, _, err := language.ParseAcceptLanguage(header)
	if err != nil || len(tags) == 0 {
		return english
	}
	_, index, confidence := languageMatcher.Match(tags...)
	if confidence == language.No {
		return english
	}
	return catalogs[index]
}

// byteCount formats n as an exact count with thousands separators.
func (c *catalog) byteCount(n int64) string {
	return bytesize.Grouped(n) + " " + c.bytesWord
}
