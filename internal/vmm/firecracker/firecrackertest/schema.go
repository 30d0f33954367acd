package firecrackertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// The definitions below restate, by hand, the parts of Firecracker's API
// description (swagger 2.0, v1.16.1, definitions section) that the fake
// serves: for each body, its required fields and each field's type,
// allowed values and bounds. Firecracker refuses unknown fields (serde's
// deny_unknown_fields), and so does the fake.

type kind int

const (
	kString kind = iota
	kBool
	kInt
	kObject
	kArray
)

func (k kind) String() string {
	return [...]string{"a string", "a boolean", "an integer", "an object", "an array"}[k]
}

type field struct {
	kind kind
	enum []string
	// fold: the enum is matched case-insensitively (the logger's level).
	fold     bool
	min, max int64
	bounded  bool   // min and max apply
	ref      string // kObject: its definition; kArray: its items' definition
}

type definition struct {
	required []string
	fields   map[string]field
}

func str() field                 { return field{kind: kString} }
func boolean() field             { return field{kind: kBool} }
func integer() field             { return field{kind: kInt, max: 1<<63 - 1, bounded: true} }
func between(lo, hi int64) field { return field{kind: kInt, min: lo, max: hi, bounded: true} }
func oneOf(v ...string) field    { return field{kind: kString, enum: v} }
func object(ref string) field    { return field{kind: kObject, ref: ref} }
func array(ref string) field     { return field{kind: kArray, ref: ref} }

// definitions are the bodies the fake accepts, by swagger definition name.
func definitions() map[string]definition {
	rateLimiter := object("RateLimiter")
	return map[string]definition{
		"InstanceActionInfo": {
			required: []string{"action_type"},
			fields:   map[string]field{"action_type": oneOf("FlushMetrics", "InstanceStart", "SendCtrlAltDel")},
		},
		"BootSource": {
			required: []string{"kernel_image_path"},
			fields:   map[string]field{"boot_args": str(), "initrd_path": str(), "kernel_image_path": str()},
		},
		"Drive": {
			required: []string{"drive_id", "is_root_device"},
			fields: map[string]field{
				"drive_id": str(), "partuuid": str(), "is_root_device": boolean(),
				"cache_type": oneOf("Unsafe", "Writeback"), "is_read_only": boolean(),
				"path_on_host": str(), "rate_limiter": rateLimiter, "io_engine": oneOf("Sync", "Async"),
				"socket": str(),
			},
		},
		"PartialDrive": {
			required: []string{"drive_id"},
			fields:   map[string]field{"drive_id": str(), "path_on_host": str(), "rate_limiter": rateLimiter},
		},
		"Logger": {
			fields: map[string]field{
				"level":    {kind: kString, enum: []string{"Error", "Warning", "Info", "Debug", "Trace", "Off"}, fold: true},
				"log_path": str(), "show_level": boolean(), "show_log_origin": boolean(), "module": str(),
			},
		},
		"MachineConfiguration": {
			required: []string{"mem_size_mib", "vcpu_count"},
			fields: map[string]field{
				"cpu_template": oneOf("C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None"),
				"smt":          boolean(), "mem_size_mib": integer(), "track_dirty_pages": boolean(),
				"vcpu_count": between(1, 32), "huge_pages": oneOf("None", "2M"),
			},
		},
		"Metrics": {
			required: []string{"metrics_path"},
			fields:   map[string]field{"metrics_path": str()},
		},
		"NetworkInterface": {
			required: []string{"host_dev_name", "iface_id"},
			fields: map[string]field{
				"guest_mac": str(), "host_dev_name": str(), "iface_id": str(), "mtu": between(68, 65535),
				"rx_rate_limiter": rateLimiter, "tx_rate_limiter": rateLimiter,
			},
		},
		"PartialNetworkInterface": {
			required: []string{"iface_id"},
			fields:   map[string]field{"iface_id": str(), "rx_rate_limiter": rateLimiter, "tx_rate_limiter": rateLimiter},
		},
		"RateLimiter": {
			fields: map[string]field{"bandwidth": object("TokenBucket"), "ops": object("TokenBucket")},
		},
		"TokenBucket": {
			required: []string{"refill_time", "size"},
			fields:   map[string]field{"one_time_burst": integer(), "refill_time": integer(), "size": integer()},
		},
		"SnapshotCreateParams": {
			required: []string{"mem_file_path", "snapshot_path"},
			fields:   map[string]field{"mem_file_path": str(), "snapshot_path": str(), "snapshot_type": oneOf("Full", "Diff")},
		},
		"SnapshotLoadParams": {
			required: []string{"snapshot_path"},
			fields: map[string]field{
				"enable_diff_snapshots": boolean(), "track_dirty_pages": boolean(), "mem_file_path": str(),
				"mem_backend": object("MemoryBackend"), "snapshot_path": str(), "resume_vm": boolean(),
				"network_overrides": array("NetworkOverride"), "vsock_override": object("VsockOverride"),
				"clock_realtime": boolean(),
			},
		},
		"MemoryBackend": {
			required: []string{"backend_type", "backend_path"},
			fields:   map[string]field{"backend_type": oneOf("File", "Uffd"), "backend_path": str()},
		},
		"NetworkOverride": {
			required: []string{"iface_id", "host_dev_name"},
			fields:   map[string]field{"iface_id": str(), "host_dev_name": str()},
		},
		"VsockOverride": {
			required: []string{"uds_path"},
			fields:   map[string]field{"uds_path": str()},
		},
		"Vm": {
			required: []string{"state"},
			fields:   map[string]field{"state": oneOf("Paused", "Resumed")},
		},
		"EntropyDevice": {
			fields: map[string]field{"rate_limiter": rateLimiter},
		},
		"Vsock": {
			required: []string{"guest_cid", "uds_path"},
			fields:   map[string]field{"guest_cid": between(3, 1<<32-1), "uds_path": str(), "vsock_id": str()},
		},
	}
}

// validate checks body against definition def and decodes it into out.
// Its messages follow serde's, which Firecracker passes on.
func validate(defs map[string]definition, def string, body []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%v", err)
	}
	if dec.More() {
		return fmt.Errorf("trailing characters")
	}
	if err := check(defs, def, v); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}

func check(defs map[string]definition, def string, v any) error {
	d, ok := defs[def]
	if !ok {
		return fmt.Errorf("fake: no definition %q", def)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("invalid type: %s, expected struct %s", describe(v), def)
	}
	names := make([]string, 0, len(d.fields))
	for n := range d.fields {
		names = append(names, n)
	}
	sort.Strings(names)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, known := d.fields[k]
		if !known {
			return fmt.Errorf("unknown field `%s`, expected one of `%s`", k, strings.Join(names, "`, `"))
		}
		if obj[k] == nil && !slices.Contains(d.required, k) {
			continue // an Option left at None
		}
		if err := checkField(defs, k, f, obj[k]); err != nil {
			return err
		}
	}
	for _, r := range d.required {
		if _, ok := obj[r]; !ok {
			return fmt.Errorf("missing field `%s`", r)
		}
	}
	return nil
}

func checkField(defs map[string]definition, name string, f field, v any) error {
	switch f.kind {
	case kString:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: invalid type: %s, expected %s", name, describe(v), f.kind)
		}
		if len(f.enum) > 0 && !slices.ContainsFunc(f.enum, func(e string) bool {
			return e == s || f.fold && strings.EqualFold(e, s)
		}) {
			return fmt.Errorf("unknown variant `%s`, expected one of `%s`", s, strings.Join(f.enum, "`, `"))
		}
	case kBool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: invalid type: %s, expected %s", name, describe(v), f.kind)
		}
	case kInt:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: invalid type: %s, expected %s", name, describe(v), f.kind)
		}
		i, err := n.Int64()
		if err != nil || i < 0 {
			return fmt.Errorf("%s: invalid value: %s, expected an unsigned integer", name, n)
		}
		if f.bounded && (i < f.min || i > f.max) {
			return fmt.Errorf("%s: invalid value: %d, expected an integer between %d and %d", name, i, f.min, f.max)
		}
	case kObject:
		if err := check(defs, f.ref, v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	case kArray:
		items, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: invalid type: %s, expected %s", name, describe(v), f.kind)
		}
		for i, it := range items {
			if err := check(defs, f.ref, it); err != nil {
				return fmt.Errorf("%s[%d]: %w", name, i, err)
			}
		}
	}
	return nil
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean `%v`", x)
	case json.Number:
		return "number " + x.String()
	case []any:
		return "sequence"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}
