package notify

import (
	"bytes"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// composeMail returns m as an RFC 5322 message with CRLF line ends: a multipart/alternative
// body with a plain text and an HTML part, both quoted-printable, and a Subject encoded per
// RFC 2047 when it is not ASCII.
func composeMail(from *mail.Address, to []*mail.Address, m Message, date time.Time) ([]byte, error) {
	text := RenderText(m, 0)
	html, err := RenderHTML(m)
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	parts := multipart.NewWriter(&body)
	if err := writeQuotedPart(parts, "text/plain; charset=UTF-8", text.Body); err != nil {
		return nil, err
	}
	if err := writeQuotedPart(parts, "text/html; charset=UTF-8", html); err != nil {
		return nil, err
	}
	if err := parts.Close(); err != nil {
		return nil, fmt.Errorf("close the mail body: %w", err)
	}

	var msg bytes.Buffer
	header := func(name, value string) { fmt.Fprintf(&msg, "%s: %s\r\n", name, value) }
	header("From", from.String())
	header("To", addressList(to))
	header("Subject", encodeSubject("[ferry] "+text.Title))
	header("Date", date.Format(time.RFC1123Z))
	header("Message-ID", fmt.Sprintf("<%s@%s>", randomID(), domainOf(from.Address)))
	header("MIME-Version", "1.0")
	header("Content-Type", "multipart/alternative; boundary="+parts.Boundary())
	header("Auto-Submitted", "auto-generated")
	header("X-Ferry-Event", string(m.Event))
	msg.WriteString("\r\n")
	msg.Write(body.Bytes())
	return msg.Bytes(), nil
}

func writeQuotedPart(parts *multipart.Writer, contentType, content string) error {
	w, err := parts.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {contentType},
		"Content-Transfer-Encoding": {"quoted-printable"},
	})
	if err != nil {
		return fmt.Errorf("start the %s part: %w", contentType, err)
	}
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(content)); err != nil {
		return fmt.Errorf("write the %s part: %w", contentType, err)
	}
	if err := qp.Close(); err != nil {
		return fmt.Errorf("write the %s part: %w", contentType, err)
	}
	return nil
}

// encodeSubject encodes a non-ASCII subject as RFC 2047 words, one per folded line so that no
// header line grows too long.
func encodeSubject(s string) string {
	return strings.ReplaceAll(mime.BEncoding.Encode("UTF-8", s), "?= =?", "?=\r\n =?")
}

func addressList(to []*mail.Address) string {
	list := make([]string, len(to))
	for i, a := range to {
		list[i] = a.String()
	}
	return strings.Join(list, ",\r\n ")
}

func domainOf(address string) string {
	if i := strings.LastIndexByte(address, '@'); i >= 0 {
		return address[i+1:]
	}
	return "ferry.invalid"
}
