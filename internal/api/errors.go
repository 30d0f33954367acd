// Package api holds the wire types shared by the CLI, the owner daemon and
// the root helper: request/response bodies, error codes, progress events.
// It has no behaviour beyond (de)serialising and matching errors.
package api

import (
	"errors"
	"fmt"
)

// Code classifies an error so that it survives a trip over the socket.
type Code string

const (
	CodeNotFound       Code = "not_found"
	CodeAlreadyExists  Code = "already_exists"
	CodeBadRequest     Code = "bad_request"
	CodeConflict       Code = "conflict"
	CodeBadVersion     Code = "bad_version"
	CodeUnauthorized   Code = "unauthorized"
	CodeUnknownMethod  Code = "unknown_method"
	CodeUnavailable    Code = "unavailable"
	CodeOperationFault Code = "operation_failed"
)

// Error is an error with a code. The sentinels below carry only a code;
// errors.Is matches any *Error with the same code, so
// errors.Is(err, api.ErrNotFound) works on both sides of the socket.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"error"`
	// Hint is one line telling the user what to do next, if there is one.
	Hint string `json:"hint,omitempty"`
	// OpID identifies the request in the daemon's log.
	OpID string `json:"op_id,omitempty"`
}

// Sentinels, one per code.
var (
	ErrNotFound       = &Error{Code: CodeNotFound}
	ErrAlreadyExists  = &Error{Code: CodeAlreadyExists}
	ErrBadRequest     = &Error{Code: CodeBadRequest}
	ErrConflict       = &Error{Code: CodeConflict}
	ErrBadVersion     = &Error{Code: CodeBadVersion}
	ErrUnauthorized   = &Error{Code: CodeUnauthorized}
	ErrUnknownMethod  = &Error{Code: CodeUnknownMethod}
	ErrUnavailable    = &Error{Code: CodeUnavailable}
	ErrOperationFault = &Error{Code: CodeOperationFault}
)

func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return e.Message
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf builds an *Error with a code and a formatted message.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithHint attaches a one-line "what to do" to err, keeping its code.
func WithHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Code: CodeOf(err), Message: err.Error(), Hint: hint}
}

// CodeOf finds the code of err: the first *Error in its chain, or
// operation_failed when it has none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeOperationFault
}

// HintOf returns the first hint found in err's chain.
func HintOf(err error) string {
	for err != nil {
		if e, ok := err.(*Error); ok && e.Hint != "" {
			return e.Hint
		}
		err = errors.Unwrap(err)
	}
	return ""
}

// Body turns any error into its wire form.
func Body(err error, opID string) *Error {
	return &Error{Code: CodeOf(err), Message: err.Error(), Hint: HintOf(err), OpID: opID}
}

// HTTPStatus maps a code to the status the servers answer with.
func HTTPStatus(c Code) int {
	switch c {
	case CodeNotFound:
		return 404
	case CodeAlreadyExists, CodeConflict:
		return 409
	case CodeBadRequest, CodeBadVersion:
		return 400
	case CodeUnauthorized:
		return 403
	case CodeUnknownMethod:
		return 405
	case CodeUnavailable:
		return 503
	default:
		return 500
	}
}
