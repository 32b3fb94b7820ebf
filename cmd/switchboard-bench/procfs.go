package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat. Linux has
// reported USER_HZ = 100 to user space on every architecture for decades.
const clockTicks = 100

// procCPU returns the user+system CPU time used so far by process pid (all
// its threads), in seconds.
func procCPU(pid int) (float64, error) {
	u, s, err := procCPUSplit(pid)
	return u + s, err
}

// procCPUSplit returns the user and the system CPU time used so far by
// process pid, in seconds.
func procCPUSplit(pid int) (user, sys float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields are counted after
	// its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("read cpu of pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("read cpu of pid %d: short stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("read cpu of pid %d: malformed stat", pid)
	}
	return float64(ut) / clockTicks, float64(st) / clockTicks, nil
}

// procStatus holds the fields of /proc/<pid>/status the tool reports.
type procStatus struct {
	RSSKiB     int64 // VmRSS
	RSSAnonKiB int64 // RssAnon
	Threads    int64
	// FDs is the number of open file descriptors (from /proc/<pid>/fd).
	FDs int64
}

// readProcStatus reads the memory and thread figures of process pid.
func readProcStatus(pid int) (procStatus, error) {
	var ps procStatus
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			ps.RSSKiB = n
		case "RssAnon":
			ps.RSSAnonKiB = n
		case "Threads":
			ps.Threads = n
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		ps.FDs = int64(len(ents))
	}
	return ps, sc.Err()
}

// netCounters are the kernel's TCP and loopback counters that explain stalls
// on a loaded loopback: dropped packets, retransmissions, listen overflows.
type netCounters struct {
	RetransSegs     int64 // Tcp: segments retransmitted
	TCPTimeouts     int64 // TcpExt: retransmission timer expirations
	ListenOverflows int64 // TcpExt: accept queue full
	ListenDrops     int64 // TcpExt: SYNs dropped at listen
	BacklogDrops    int64 // TcpExt: TCPBacklogDrop (socket backlog full)
	SoftnetDrops    int64 // /proc/net/softnet_stat: input queue (netdev_max_backlog) full
	SoftnetSqueeze  int64 // /proc/net/softnet_stat: softirq ran out of budget
}

// readNetCounters reads /proc/net/snmp, /proc/net/netstat and
// /proc/net/softnet_stat. Missing files leave their counters at zero.
func readNetCounters() netCounters {
	var c netCounters
	snmp := readKeyedTable("/proc/net/snmp")
	ext := readKeyedTable("/proc/net/netstat")
	c.RetransSegs = snmp["Tcp"]["RetransSegs"]
	c.TCPTimeouts = ext["TcpExt"]["TCPTimeouts"]
	c.ListenOverflows = ext["TcpExt"]["ListenOverflows"]
	c.ListenDrops = ext["TcpExt"]["ListenDrops"]
	c.BacklogDrops = ext["TcpExt"]["TCPBacklogDrop"]
	if b, err := os.ReadFile("/proc/net/softnet_stat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 3 {
				continue
			}
			d, _ := strconv.ParseInt(fs[1], 16, 64)
			s, _ := strconv.ParseInt(fs[2], 16, 64)
			c.SoftnetDrops += d
			c.SoftnetSqueeze += s
		}
	}
	return c
}

// sub returns the counters' growth since old.
func (c netCounters) sub(old netCounters) netCounters {
	return netCounters{
		RetransSegs:     c.RetransSegs - old.RetransSegs,
		TCPTimeouts:     c.TCPTimeouts - old.TCPTimeouts,
		ListenOverflows: c.ListenOverflows - old.ListenOverflows,
		ListenDrops:     c.ListenDrops - old.ListenDrops,
		BacklogDrops:    c.BacklogDrops - old.BacklogDrops,
		SoftnetDrops:    c.SoftnetDrops - old.SoftnetDrops,
		SoftnetSqueeze:  c.SoftnetSqueeze - old.SoftnetSqueeze,
	}
}

// readKeyedTable parses files made of pairs of lines "Prefix: names..." and
// "Prefix: values...", as /proc/net/snmp and /proc/net/netstat are.
func readKeyedTable(path string) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names := strings.Fields(lines[i])
		vals := strings.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(vals) || names[0] != vals[0] {
			continue
		}
		prefix := strings.TrimSuffix(names[0], ":")
		m := map[string]int64{}
		for j := 1; j < len(names); j++ {
			v, _ := strconv.ParseInt(vals[j], 10, 64)
			m[names[j]] = v
		}
		out[prefix] = m
	}
	return out
}

// parseCPUList parses a taskset-style CPU list such as "0", "1-3" or "0,2".
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		if a < 0 || b < a || b >= 1024 {
			return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("cpu list %q is empty", s)
	}
	return cpus, nil
}

// pinProcess restricts every thread of process pid to cpus, as
// "taskset -a -p" does. Threads created afterwards inherit the mask from the
// thread that creates them.
func pinProcess(pid int, cpus []int) error {
	var mask [1024 / 64]uint64
	for _, c := range cpus {
		mask[c/64] |= 1 << (uint(c) % 64)
	}
	// Two passes catch threads started while the first one ran.
	for pass := 0; pass < 2; pass++ {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		if err != nil || len(tasks) == 0 {
			return fmt.Errorf("pin pid %d: no tasks", pid)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(filepath.Base(t))
			if err != nil {
				continue
			}
			_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
			if e != 0 && e != syscall.ESRCH {
				return fmt.Errorf("pin pid %d thread %d: %w", pid, tid, e)
			}
		}
	}
	return nil
}

// machineBusy returns the CPU time all CPUs of the machine have spent busy
// (not idle or waiting for I/O) so far, in seconds, from /proc/stat.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy uint64
	for i, s := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		v, _ := strconv.ParseUint(s, 10, 64)
		busy += v
	}
	return float64(busy) / clockTicks
}
