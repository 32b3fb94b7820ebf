//go:build !linux

package testenv

import "syscall"

// serverProcAttr returns nil: only Linux can tie a child's life to its
// parent's.
func serverProcAttr() *syscall.SysProcAttr { return nil }
