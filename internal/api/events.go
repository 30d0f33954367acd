package api

import "encoding/json"

// Event is one line of a streamed (newline-delimited JSON) response. Long
// operations send any number of progress events, then exactly one result
// or error event.
type Event struct {
	Type EventType `json:"type"`
	// Stage names the step in progress ("build image", "boot").
	Stage   string `json:"stage,omitempty"`
	Message string `json:"message,omitempty"`
	// Current and Total measure progress within the stage when known
	// (bytes, files); Total 0 means unknown.
	Current int64 `json:"current,omitempty"`
	Total   int64 `json:"total,omitempty"`
	// VM names the VM the operation is about, once it is known (a create
	// without --name learns its generated name this way).
	VM     string          `json:"vm,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error_body,omitempty"`
}

// EventType is the kind of an Event.
type EventType string

const (
	EventProgress EventType = "progress"
	EventLog      EventType = "log"
	EventResult   EventType = "result"
	EventError    EventType = "error"
)

// Version handshake headers, sent on every request and response.
const (
	HeaderVersion    = "Banger-Version"
	HeaderAPIVersion = "Banger-Api-Version"
	HeaderOpID       = "Banger-Op-Id"
	// ContentTypeStream marks a newline-delimited JSON event stream.
	ContentTypeStream = "application/x-ndjson"
)
