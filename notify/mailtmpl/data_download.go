package mailtmpl

import "time"

// DownloadData fills the "download" mail: the notice a sender with
// notify_sender: downloads gets at each recipient's first download of each
// file. It carries no link: the sender has the manage link in the receipt.
type DownloadData struct {
	Subject    string    // the message's subject, decoded ("" when it had none)
	FileName   string    // the file downloaded
	Size       int64     // its size in bytes
	SHA256     string    // lowercase hex of its content
	Recipient  string    // the verified recipient; "" when not verified
	Time       time.Time // when the download started
	ClientAddr string    // the downloading client's address
}

func sampleDownload() DownloadData {
	return DownloadData{Subject: "Quarterly report", FileName: "見積書.pdf", Size: 1572864,
		SHA256:    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Recipient: "bob@example.net", Time: sampleTime, ClientAddr: "198.51.100.7"}
}
