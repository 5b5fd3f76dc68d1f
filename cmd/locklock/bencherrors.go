package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
)

// statusError names an unexpected answer by its status and problem code,
// e.g. "409 lock_held".
func statusError(status int, body []byte) string {
	if code := problemCode(body); code != "" {
		return strconv.Itoa(status) + " " + code
	}
	return strconv.Itoa(status)
}

// problemCode finds the "code" member of a problem+json body without
// decoding it all; "" if there is none that looks like a code.
func problemCode(body []byte) string {
	i := bytes.Index(body, []byte(`"code"`))
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(body[i+len(`"code"`):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	rest = rest[1:]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 || end > 64 {
		return ""
	}
	for _, c := range rest[:end] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return ""
		}
	}
	return string(rest[:end])
}

// networkError names a request that got no (whole) answer.
func networkError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := oneLine(err)
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}
