package api

// SSHInfo answers GET /v1/vms/{name}/ssh: what `banger vm ssh` needs to
// reach one VM with the system ssh client.
type SSHInfo struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
	// User is the guest account ssh logs in as ("root").
	User string `json:"user"`
	// KeyPath is banger's private key (ssh_key_path, or bangerd's own).
	KeyPath string `json:"key_path"`
	// KnownHosts is the known_hosts file bangerd keeps for guests.
	KnownHosts string `json:"known_hosts"`
	Running    bool   `json:"running"`
}

// SSHPaths answers GET /v1/ssh: the files `banger ssh-config` points ssh at.
type SSHPaths struct {
	KeyPath    string `json:"key_path"`
	KnownHosts string `json:"known_hosts"`
}
