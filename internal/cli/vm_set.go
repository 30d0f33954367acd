package cli

import (
	"fmt"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/spf13/cobra"
)

func (a *App) vmSetCmd() *cobra.Command {
	var vcpu, memory int
	var disk string
	var nat bool
	cmd := &cobra.Command{
		Use:   "set NAME [--vcpu N] [--memory MIB] [--disk-size SIZE] [--nat=true|false]",
		Short: "Change a VM's size or NAT",
		Long: `Change a VM. --vcpu, --memory and --disk-size need the VM stopped; the work
disk only grows. --nat turns outbound access through the host on or off, also
while the VM runs.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req api.SetVM
			f := cmd.Flags()
			if f.Changed("vcpu") {
				req.VCPU = &vcpu
			}
			if f.Changed("memory") {
				req.MemoryMiB = &memory
			}
			if f.Changed("disk-size") {
				n, err := config.ParseSize(disk)
				if err != nil {
					return api.Errorf(api.CodeBadRequest, "--disk-size %q: %v", disk, err)
				}
				req.DiskBytes = &n
			}
			if f.Changed("nat") {
				req.NAT = &nat
			}
			if req == (api.SetVM{}) {
				return api.WithHint(api.Errorf(api.CodeBadRequest, "nothing to change"), "pass --vcpu, --memory, --disk-size or --nat")
			}
			v, err := a.Client().SetVM(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "%s: %d vcpu | %d MiB | %s disk | nat %v\n", v.Name, v.VCPU, v.MemoryMiB, config.FormatSize(v.DiskBytes), v.NAT)
			return nil
		},
	}
	cmd.Flags().IntVar(&vcpu, "vcpu", 0, "virtual CPUs")
	cmd.Flags().IntVar(&memory, "memory", 0, "memory in MiB")
	cmd.Flags().StringVar(&disk, "disk-size", "", "grow the work disk to SIZE (e.g. 16G)")
	cmd.Flags().BoolVar(&nat, "nat", false, "let the guest reach out through the host")
	return cmd
}
