package linkserver

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/text/language"
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

// errorText is the title and the human sentence of an error page.
type errorText struct {
	Title   string
	Message string
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
		pageNotFound:         {"Link not found", "This link does not exist. Check that you copied the whole link from the mail."},
		pageExpired:          {"Link expired", "This link has expired."},
		pageRevoked:          {"Link revoked", "This link has been revoked and can no longer be used."},
		pageLimitReached:     {"Download limit reached", "This link has been used as many times as allowed."},
		pageFileGone:         {"File no longer available", "This file has been deleted and can no longer be downloaded."},
		pageCSRF:             {"Download not confirmed", "The download could not be confirmed. Open the link from the mail again and press Download. Cookies must be allowed for this site."},
		pageURLTimedOut:      {"Link timed out", "This download address has timed out. Go back to the landing page (the link in the mail) and press Download again."},
		pageMethodNotAllowed: {"Not supported", "This kind of request is not supported here."},
		pageInternal:         {"Something went wrong", "Something went wrong on our side. Please try again later."},
		pageUnavailable:      {"Temporarily unavailable", "The service is temporarily unavailable. Please try again in a few minutes."},
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
		pageNotFound:         {"リンクが見つかりません", "このリンクは存在しません。メールに記載されたリンクを最後まで正しくコピーしたかご確認ください。"},
		pageExpired:          {"有効期限切れ", "このリンクは有効期限が切れています。"},
		pageRevoked:          {"リンクは無効です", "このリンクは無効化されたため、使用できません。"},
		pageLimitReached:     {"ダウンロード回数の上限", "このリンクはダウンロード回数の上限に達しました。"},
		pageFileGone:         {"ファイルは削除されました", "このファイルは削除されたため、ダウンロードできません。"},
		pageCSRF:             {"ダウンロードを確認できません", "ダウンロードを確認できませんでした。メールのリンクを開き直し、もう一度「ダウンロード」を押してください。このサイトの Cookie を許可する必要があります。"},
		pageURLTimedOut:      {"リンクの時間切れ", "このダウンロード用アドレスは時間切れです。ダウンロードページ(メールのリンク)に戻り、もう一度「ダウンロード」を押してください。"},
		pageMethodNotAllowed: {"対応していません", "この種類のリクエストには対応していません。"},
		pageInternal:         {"エラーが発生しました", "サーバーで問題が発生しました。しばらくしてからもう一度お試しください。"},
		pageUnavailable:      {"一時的に利用できません", "一時的にサービスを利用できません。数分後にもう一度お試しください。"},
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
	return groupThousands(n) + " " + c.bytesWord
}

// humanSize formats n in binary units (KiB, MiB, ...), the same in both
// languages.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	units := [...]string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	value := float64(n) / unit
	i := 0
	for value >= unit && i < len(units)-1 {
		value /= unit
		i++
	}
	return strconv.FormatFloat(value, 'f', 1, 64) + " " + units[i]
}

func groupThousands(n int64) string {
	digits := strconv.FormatInt(n, 10)
	sign := ""
	if digits[0] == '-' {
		sign, digits = "-", digits[1:]
	}
	if len(digits) <= 3 {
		return sign + digits
	}
	out := make([]byte, 0, len(digits)+len(digits)/3)
	lead := len(digits) % 3
	if lead > 0 {
		out = append(out, digits[:lead]...)
	}
	for i := lead; i < len(digits); i += 3 {
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = append(out, digits[i:i+3]...)
	}
	return sign + string(out)
}
