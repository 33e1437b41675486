package linkserver

import (
	"fmt"
	"html/template"
	"net/http"
)

// verifyPage fills the verification forms.
type verifyPage struct {
	Action string // /v/{kind}/{token}
	CSRF   string
	Email  string // as typed, echoed back
	Sender string
	Digits int
	Error  string // why the last attempt failed; "" for none
	T      *verifyCatalog
}

// verifyCatalog holds the sentences of the verification pages.
type verifyCatalog struct {
	AddressTitle    string
	AddressIntro    string // %s: the sender
	Address         string
	SendCode        string
	CodeTitle       string
	CodeIntro       string // %s: the address typed
	Code            string
	Confirm         string
	SendAgain       string
	CodeNote        string
	BadAddress      string
	WrongCode       string
	TooManyTitle    string
	TooManyRequests string
	TooManyAttempts string
	LockedTitle     string
	Locked          string // %s: until when
	VerifiedAs      string // landing page; followed by the address
	WillAsk         string // landing page, before verification
}

var verifyEnglish = &verifyCatalog{
	AddressTitle:    "Confirm that you are a recipient",
	AddressIntro:    "The sender (%s) asked that only the recipients of the mail can download these files. Enter the mail address this mail was sent to; we will mail a one-time code to it.",
	Address:         "Your mail address",
	SendCode:        "Send code",
	CodeTitle:       "Enter the code",
	CodeIntro:       "If %s is a recipient of this mail, a code is on its way to it. It works once, for 10 minutes.",
	Code:            "Code",
	Confirm:         "Confirm",
	SendAgain:       "Send a new code",
	CodeNote:        "No mail? Check the address and your spam folder, then send a new code. After five wrong codes you must wait 15 minutes.",
	BadAddress:      "Enter a mail address, such as name@example.com.",
	WrongCode:       "That code is not right, or it has expired or was already used. Check the latest mail and try again.",
	TooManyTitle:    "Too many requests",
	TooManyRequests: "Too many codes were requested from your network. Please wait 10 minutes and try again.",
	TooManyAttempts: "Too many codes were tried from your network. Please wait 15 minutes and try again.",
	LockedTitle:     "Too many wrong codes",
	Locked:          "Too many wrong codes were entered for this address. You can try again after %s with a new code.",
	VerifiedAs:      "Confirmed as",
	WillAsk:         "The sender asked that only recipients can download: pressing Download asks for your mail address and a code the first time.",
}

var verifyJapanese = &verifyCatalog{
	AddressTitle:    "受信者であることの確認",
	AddressIntro:    "送信者 (%s) は、このメールの受信者だけがファイルをダウンロードできるよう指定しています。このメールを受け取ったメールアドレスを入力してください。確認コードをそのアドレスにお送りします。",
	Address:         "メールアドレス",
	SendCode:        "コードを送信",
	CodeTitle:       "確認コードの入力",
	CodeIntro:       "%s がこのメールの受信者であれば、確認コードを送信しました。コードは 1 回限り、10 分間有効です。",
	Code:            "確認コード",
	Confirm:         "確認",
	SendAgain:       "新しいコードを送信",
	CodeNote:        "メールが届かない場合は、アドレスと迷惑メールフォルダーを確認してから、新しいコードを送信してください。5 回間違えると 15 分間お待ちいただく必要があります。",
	BadAddress:      "name@example.com のような形式でメールアドレスを入力してください。",
	WrongCode:       "コードが正しくないか、有効期限切れまたは使用済みです。最新のメールを確認して、もう一度入力してください。",
	TooManyTitle:    "リクエストが多すぎます",
	TooManyRequests: "お使いのネットワークからのコード送信の依頼が多すぎます。10 分ほど待ってから、もう一度お試しください。",
	TooManyAttempts: "お使いのネットワークからのコード入力が多すぎます。15 分ほど待ってから、もう一度お試しください。",
	LockedTitle:     "コードの誤りが多すぎます",
	Locked:          "このアドレスについて誤ったコードが多く入力されました。%s 以降に新しいコードで再度お試しください。",
	VerifiedAs:      "確認済みのアドレス",
	WillAsk:         "送信者は受信者だけがダウンロードできるよう指定しています。初回は「ダウンロード」を押すと、メールアドレスと確認コードの入力を求められます。",
}

func verifyCatalogFor(r *http.Request) *verifyCatalog {
	if catalogFor(r) == japanese {
		return verifyJapanese
	}
	return verifyEnglish
}

func init() {
	template.Must(pageTemplates.New("verify").Funcs(template.FuncMap{
		"sprintf": func(format, arg string) string { return sprintf1(format, arg) },
	}).Parse(`
{{- define "verify-error" -}}
{{if .Verify.Error}}<p class="note" role="alert"><strong>{{.Verify.Error}}</strong></p>{{end}}
{{- end}}

{{- define "verify-address" -}}
{{template "top" .}}<h1>{{.Verify.T.AddressTitle}}</h1>
{{template "verify-error" .}}
<p>{{sprintf .Verify.T.AddressIntro .Verify.Sender}}</p>
<form method="post" action="{{.Verify.Action}}">
<input type="hidden" name="` + csrfField + `" value="{{.Verify.CSRF}}">
<input type="hidden" name="op" value="send">
<p><label for="email">{{.Verify.T.Address}}</label><br>
<input type="email" id="email" name="email" value="{{.Verify.Email}}" maxlength="254" autocomplete="email" required></p>
<button type="submit">{{.Verify.T.SendCode}}</button>
</form>
{{template "bottom" .}}
{{- end}}

{{- define "verify-code" -}}
{{template "top" .}}<h1>{{.Verify.T.CodeTitle}}</h1>
{{template "verify-error" .}}
<p>{{sprintf .Verify.T.CodeIntro .Verify.Email}}</p>
<form method="post" action="{{.Verify.Action}}">
<input type="hidden" name="` + csrfField + `" value="{{.Verify.CSRF}}">
<input type="hidden" name="op" value="code">
<input type="hidden" name="email" value="{{.Verify.Email}}">
<p><label for="code">{{.Verify.T.Code}}</label><br>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="32" required></p>
<button type="submit">{{.Verify.T.Confirm}}</button>
</form>
<form method="post" action="{{.Verify.Action}}">
<input type="hidden" name="` + csrfField + `" value="{{.Verify.CSRF}}">
<input type="hidden" name="op" value="send">
<input type="hidden" name="email" value="{{.Verify.Email}}">
<p class="note">{{.Verify.T.CodeNote}}</p>
<button type="submit">{{.Verify.T.SendAgain}}</button>
</form>
{{template "bottom" .}}
{{- end}}
`))
}

// renderVerify sends a verification page with an optional error line.
func (s *Server) renderVerify(w http.ResponseWriter, r *http.Request, status int, name string, page *verifyPage, errMsg string) {
	t := catalogFor(r)
	page.T = verifyCatalogFor(r)
	page.Error = errMsg
	title := page.T.AddressTitle
	if name == "verify-code" {
		title = page.T.CodeTitle
	}
	s.renderPage(w, r, status, name, pageData{T: t, Title: title, Verify: page})
}

// sprintf1 formats one string argument into a catalog sentence.
func sprintf1(format, arg string) string { return fmt.Sprintf(format, arg) }
