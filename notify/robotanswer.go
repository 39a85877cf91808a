package notify

import (
	"encoding/json"
	"fmt"
	"time"
)

// codePolicy says which of a platform's error codes are worth another try, and after how
// long (0: the ordinary Backoff). Codes not listed are permanent.
type codePolicy map[int]time.Duration

// codeAnswer reads an answer of the shape DingTalk, WeCom and Feishu use: a JSON object
// whose code field is 0 on success and whose message field says what went wrong.
// Feishu's older webhooks answer StatusCode/StatusMessage instead of code/msg.
type codeAnswer struct {
	ErrCode       *int   `json:"errcode"`
	ErrMsg        string `json:"errmsg"`
	Code          *int   `json:"code"`
	Msg           string `json:"msg"`
	StatusCode    *int   `json:"StatusCode"`
	StatusMessage string `json:"StatusMessage"`
}

func (c codeAnswer) code() (int, string, bool) {
	switch {
	case c.ErrCode != nil:
		return *c.ErrCode, c.ErrMsg, true
	case c.Code != nil:
		return *c.Code, c.Msg, true
	case c.StatusCode != nil:
		return *c.StatusCode, c.StatusMessage, true
	default:
		return 0, "", false
	}
}

// robotResult interprets a robot's answer: nil for code 0; a *SendError quoting the code and
// the platform's message otherwise, retryable when policy lists the code. An answer without a
// code is judged by its HTTP status, and a 2xx without a code is an error worth retrying.
func robotResult(platform, codeName string, a answer, policy codePolicy) error {
	var parsed codeAnswer
	if json.Unmarshal(a.Body, &parsed) == nil {
		if code, msg, ok := parsed.code(); ok {
			if code == 0 {
				return nil
			}
			wait, retry := policy[code]
			return &SendError{Platform: platform, Permanent: !retry, RetryAfter: max(wait, a.RetryAfter),
				Reason: fmt.Sprintf("answered %s %d", codeName, code), Answer: quoteAnswer([]byte(msg))}
		}
	}
	if err := statusError(platform, a); err != nil {
		return err
	}
	e := retryablef(platform, 0, "answered HTTP %d without a result code", a.Status)
	e.Answer = quoteAnswer(a.Body)
	return e
}
