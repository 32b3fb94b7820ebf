package testenv

import "syscall"

// serverProcAttr makes a started server die with the test process, so that
// a test binary killed on a timeout leaves no server behind.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
