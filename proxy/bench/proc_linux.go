package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd's process get SIGTERM when the bench ends
// without stopping it (killed, or a closed pipe): no proxy outlives it.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
}
