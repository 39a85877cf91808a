package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// decodeJSON reads the request body as one JSON object into dst. It refuses, with an EINVALID
// error naming where or which field, malformed JSON, values of the wrong type, fields dst does
// not have and data after the object; and bodies over MaxBodyBytes with ETOOLARGE.
func decodeJSON(c *gin.Context, dst any) error {
	if c.Request.Body == nil {
		return store.Errorf(store.EINVALID, "request body is empty; want a JSON object")
	}
	data, err := io.ReadAll(c.Request.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errBodyTooLarge
	}
	if err != nil {
		return store.Errorf(store.EINVALID, "read request body: %v", err)
	}
	return decodeJSONBytes(data, dst)
}

// decodeJSONBytes is decodeJSON on a body already read.
func decodeJSONBytes(data []byte, dst any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return store.Errorf(store.EINVALID, "request body is empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := position(data, dec.InputOffset())
		return store.Errorf(store.EINVALID, "malformed JSON at line %d, column %d: unexpected data after the JSON object", line, col)
	}
	return nil
}

// jsonError turns an encoding/json error into a user-facing EINVALID error.
func jsonError(data []byte, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		line, col := position(data, syntax.Offset)
		return store.Errorf(store.EINVALID, "malformed JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return store.Errorf(store.EINVALID, "malformed JSON: the body ends before the JSON value does")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return store.Errorf(store.EINVALID, "%s: want %s, got %s", field, jsonKind(typ.Type), typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return store.Errorf(store.EINVALID, "%s: unknown field", strings.Trim(name, `"`))
	}
	var inv *store.Error
	if errors.As(err, &inv) {
		return inv
	}
	return store.Errorf(store.EINVALID, "malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names the JSON kind a Go type is decoded from, for error messages.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.String()
}

// position returns the 1-based line and column of a byte offset in data.
func position(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// bindJSON decodes the body into dst and answers the request with the error if that fails;
// it reports whether the handler should go on.
func (s *Server) bindJSON(c *gin.Context, dst any) bool {
	if err := decodeJSON(c, dst); err != nil {
		s.fail(c, err)
		return false
	}
	return true
}
