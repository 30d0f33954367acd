package cli

import (
	"fmt"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/spf13/cobra"
)

// vmSpecFlags are the sizing flags vm create and vm run share.
type vmSpecFlags struct {
	name, image, disk string
	vcpu, memory      int
}

func (f *vmSpecFlags) register(cmd *cobra.Command, cfg *config.Config) {
	d := config.Default(config.DetectHost(), "/").VMDefaults
	image := "debian-bookworm"
	if cfg != nil {
		d, image = cfg.VMDefaults, cfg.DefaultImage
	}
	cmd.Flags().StringVar(&f.name, "name", "", "VM name, a DNS label (default: a generated adjective-noun)")
	cmd.Flags().StringVar(&f.image, "image", image, "image to boot")
	cmd.Flags().IntVar(&f.vcpu, "vcpu", d.VCPU.Value, "virtual CPUs")
	cmd.Flags().IntVar(&f.memory, "memory", d.MemoryMiB.Value, "memory in MiB")
	cmd.Flags().StringVar(&f.disk, "disk-size", config.FormatSize(d.DiskBytes.Value), "size of the work disk mounted on /root (e.g. 8G)")
}

// request validates the flags and builds the create request; nothing is
// created when this fails.
func (f *vmSpecFlags) request() (api.CreateVM, error) {
	disk, err := config.ParseSize(f.disk)
	if err != nil {
		return api.CreateVM{}, api.Errorf(api.CodeBadRequest, "--disk-size %q: %v", f.disk, err)
	}
	switch {
	case f.vcpu < config.MinVCPU || f.vcpu > config.MaxVCPU:
		return api.CreateVM{}, api.Errorf(api.CodeBadRequest, "--vcpu %d: must be between %d and %d", f.vcpu, config.MinVCPU, config.MaxVCPU)
	case f.memory < config.MinMemoryMiB || f.memory > config.MaxMemoryMiB:
		return api.CreateVM{}, api.Errorf(api.CodeBadRequest, "--memory %d: must be between %d and %d MiB", f.memory, config.MinMemoryMiB, config.MaxMemoryMiB)
	case disk < config.MinDiskBytes:
		return api.CreateVM{}, api.Errorf(api.CodeBadRequest, "--disk-size %s: must be at least %s", f.disk, config.FormatSize(config.MinDiskBytes))
	}
	return api.CreateVM{Name: f.name, Image: f.image, VCPU: &f.vcpu, MemoryMiB: &f.memory, DiskBytes: &disk}, nil
}

// specLine is printed before anything is created.
func specLine(req api.CreateVM) string {
	return fmt.Sprintf("spec: %d vcpu | %d MiB | %s disk | image %s", *req.VCPU, *req.MemoryMiB, config.FormatSize(*req.DiskBytes), req.Image)
}

func (a *App) vmCreateCmd() *cobra.Command {
	var f vmSpecFlags
	var noStart bool
	cmd := &cobra.Command{
		Use:   "create [--name NAME] [--image IMAGE] [--vcpu N] [--memory MIB] [--disk-size SIZE] [--no-start]",
		Short: "Create a VM and boot it",
		Long: `Create a VM and (unless --no-start) boot it and wait until its agent answers.
The default image is built from Debian packages on first use. Creating a VM
copies nothing of the image: it costs the same for any image size.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			req.NoStart = noStart
			fmt.Fprintln(a.Err, specLine(req))
			v, err := a.Client().CreateVM(cmd.Context(), req, a.stageProgress())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "%s %s (%s, %s)\n", v.Name, v.State, v.IP, v.Hypervisor)
			return nil
		},
	}
	cfg, _ := a.config()
	f.register(cmd, cfg)
	cmd.Flags().BoolVar(&noStart, "no-start", false, "create the VM and its disks without booting it")
	return cmd
}
