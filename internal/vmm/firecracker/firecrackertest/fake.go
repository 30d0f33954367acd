// Package firecrackertest is a strict stand-in for the firecracker binary,
// for tests on hosts without KVM. A test binary becomes it by calling Main
// from TestMain when EnvConfig is set (the trick os/exec's tests use), and
// is then run wherever firecracker would be.
//
// It serves Firecracker's HTTP API on --api-sock as the API description
// (swagger 2.0, v1.16.1) defines it: each body is checked against its
// definition (required fields, types, allowed values, bounds, no unknown
// fields), pre-boot-only resources are refused after InstanceStart and
// post-boot ones before it, the files, tap and socket a request names are
// opened as Firecracker would open them, and anything else is a 400 with
// a fault_message. Every request is recorded as one line of text, with its
// answer, for tests to compare.
//
// The guest is emulated, not run: InstanceStart checks the kernel is an
// ELF x86_64 image and starts a banger-agent on the host ("--listen
// unix:PATH") in the guest's place. The vsock socket splices "CONNECT
// <port>" to it, so a daemon reaches a real agent through the same hybrid
// vsock handshake. An agent that exits after a reboot request ends the
// fake, as a guest reboot ends Firecracker; after a power-off the fake
// stays up with its guest halted, as Firecracker on x86 does.
package firecrackertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// EnvConfig names the fake's configuration file (a JSON Config). A test
// binary's TestMain that finds it set runs Main instead of the tests.
const EnvConfig = "BANGER_FAKE_FIRECRACKER"

// DefaultVersion is the Firecracker version the fake claims to be.
const DefaultVersion = "1.16.1"

// AgentRebootStatus is how banger-agent --listen exits after a reboot
// request (after a power-off it exits 0).
const AgentRebootStatus = 3

// Config says how the fake behaves. Every process reads it at start, so a
// test may rewrite it between VM starts.
type Config struct {
	// Records is a directory the fake appends its records to: <id>.log
	// for the VM of --id. It must be writable by whoever runs the fake.
	Records string `json:"records"`
	// Agent is the banger-agent binary to run as the guest; without one,
	// every vsock CONNECT is refused, as by a guest that never comes up.
	Agent string `json:"agent,omitempty"`
	// Version is the version claimed (DefaultVersion when empty).
	Version string `json:"version,omitempty"`
	// OpenTaps opens each network interface's tap by name, as Firecracker
	// does: the tap must exist and be usable by the fake's user.
	OpenTaps bool `json:"open_taps,omitempty"`
	// Faults answer a request, "PUT /network-interfaces/eth0", with a 400
	// and this fault_message, whatever its body.
	Faults map[string]string `json:"faults,omitempty"`
	// Chroot emulates the jailer's chroot: every path the fake is given
	// (--api-sock, and the files and sockets requests name) is looked up
	// inside this directory, as a jailed Firecracker sees them.
	Chroot string `json:"chroot,omitempty"`
}

// WriteConfig writes cfg to path (0644: the fake may run as another user).
func WriteConfig(path string, cfg Config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Records returns what the fake recorded for the VM with id: one line per
// process start, API request, vsock connection and guest event.
func Records(dir, id string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, id+".log"))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"), nil
}

// options are the command-line arguments the fake understands: those
// banger passes, and those the jailer adds.
type options struct {
	apiSock string
	id      string
	version bool
	args    []string // as recorded: without the jailer's timing arguments
}

// exitArgs is Firecracker's exit status for a command line it cannot parse.
const exitArgs = 153

func parseArgs(argv []string) (options, error) {
	o := options{apiSock: "/run/firecracker.socket", id: "anonymous-instance"}
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		name, val, hasVal := strings.Cut(a, "=")
		takesValue := map[string]bool{"--api-sock": true, "--id": true, "--start-time-us": true, "--start-time-cpu-us": true, "--parent-cpu-time-us": true}
		if name == "--version" {
			o.version = true
			continue
		}
		if !takesValue[name] {
			return o, fmt.Errorf("Found argument '%s' which wasn't expected, or isn't valid in this context", a)
		}
		if !hasVal {
			if i+1 >= len(argv) {
				return o, fmt.Errorf("The argument '%s' requires a value but none was supplied", name)
			}
			i++
			val = argv[i]
		}
		switch name {
		case "--api-sock":
			o.apiSock = val
		case "--id":
			o.id = val
		default:
			continue // the jailer's timing arguments: not recorded
		}
		o.args = append(o.args, name, val)
	}
	return o, nil
}

// Main runs the fake with os.Args and returns its exit status.
func Main() int {
	var cfg Config
	if path := os.Getenv(EnvConfig); path != "" {
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &cfg)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "fake firecracker: config %s: %v\n", path, err)
			return 1
		}
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	o, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "Arguments parsing error: %v\n", err)
		return exitArgs
	}
	if o.version {
		fmt.Printf("Firecracker v%s\n\nSupported snapshot data format versions: v8.0.0\n", cfg.Version)
		return 0
	}
	rec, err := newRecorder(cfg.Records, o.id)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake firecracker: %v\n", err)
		return 1
	}
	defer rec.close()
	rec.add("start " + strings.Join(o.args, " "))
	f := newFake(cfg, o, rec)
	code := f.run()
	rec.add(fmt.Sprintf("exit %d", code))
	return code
}

// recorder appends lines to the VM's record file; each line is one write,
// so concurrent processes of the same VM do not interleave within lines.
type recorder struct {
	mu sync.Mutex
	f  *os.File
}

func newRecorder(dir, id string) (*recorder, error) {
	if dir == "" {
		return &recorder{}, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, id+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	return &recorder{f: f}, nil
}

func (r *recorder) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil {
		r.f.WriteString(strings.ReplaceAll(line, "\n", `\n`) + "\n")
	}
}

func (r *recorder) close() {
	if r.f != nil {
		r.f.Close()
	}
}

// run serves the API until the emulated guest ends the process.
func (f *fake) run() int {
	if _, err := os.Lstat(f.in(f.opts.apiSock)); err == nil {
		fmt.Fprintf(os.Stderr, "Error: Failed to open the API socket at: %s. Check that it is not already used.\n", f.opts.apiSock)
		return 1
	}
	ln, err := net.Listen("unix", f.in(f.opts.apiSock))
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: Failed to open the API socket at: %s: %v\n", f.opts.apiSock, err)
		return 1
	}
	fmt.Printf("Running Firecracker v%s (fake)\n", f.cfg.Version)
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	code := <-f.exit
	f.mu.Lock()
	f.guest.kill()
	f.mu.Unlock()
	ln.Close()
	return code
}

// in is where the fake finds a path it was given: inside its emulated
// chroot, if any.
func (f *fake) in(path string) string {
	if f.cfg.Chroot == "" {
		return path
	}
	return filepath.Join(f.cfg.Chroot, path)
}

// maxPayload is Firecracker's default --http-api-max-payload-size.
const maxPayload = 51200

// ServeHTTP answers one request; like Firecracker, one at a time.
func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	var a answer
	switch {
	case err != nil:
		a = fault("Failed to read the request body: %v", err)
	case len(body) > maxPayload:
		a = answer{status: http.StatusRequestEntityTooLarge, fault: fmt.Sprintf("Request payload with size %d is larger than the limit of %d allowed by server.", len(body), maxPayload)}
	case len(r.TransferEncoding) > 0:
		a = fault("Unsupported transfer encoding %q: the body needs a Content-Length.", strings.Join(r.TransferEncoding, ","))
	default:
		a = f.handle(r.Method, r.URL.Path, body)
	}
	line := r.Method + " " + r.URL.Path
	if len(body) > 0 {
		line += " " + canonical(body)
	}
	line += fmt.Sprintf(" -> %d", a.status)
	if a.fault != "" {
		line += " " + a.fault
	}
	f.rec.add(line)
	f.logf("The API server received a %s request on %q. Status %d. %s", r.Method, r.URL.Path, a.status, a.fault)
	switch {
	case a.fault != "":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		json.NewEncoder(w).Encode(map[string]string{"fault_message": a.fault})
	case a.data != nil:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		json.NewEncoder(w).Encode(a.data)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
	if a.then != nil {
		go a.then()
	}
}

// canonical is a JSON body with sorted keys and no spaces; anything else
// as it came.
func canonical(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return strings.TrimSpace(string(body))
	}
	b, err := json.Marshal(v)
	if err != nil {
		return strings.TrimSpace(string(body))
	}
	return string(b)
}

// answer is the outcome of one request.
type answer struct {
	status int
	data   any    // a 200's body
	fault  string // an error's fault_message
	then   func() // runs after the answer is sent
}

func ok() answer          { return answer{status: http.StatusNoContent} }
func okData(v any) answer { return answer{status: http.StatusOK, data: v} }
func fault(format string, args ...any) answer {
	return answer{status: http.StatusBadRequest, fault: fmt.Sprintf(format, args...)}
}

// Firecracker's messages for the operations of the wrong phase.
const (
	notAfterBoot  = "The requested operation is not supported after starting the microVM."
	notBeforeBoot = "The requested operation is not supported before starting the microVM."
)

// serdeFault is how Firecracker reports a body that does not decode.
func serdeFault(err error) answer {
	return fault("An error occurred when deserializing the json body of a request: %v.", err)
}
