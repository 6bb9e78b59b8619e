package gatewaytest

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// SmallDisk mounts a tmpfs of size bytes for the test and returns its directory; the test is
// skipped (with the reason) where mounting is not permitted (not root, no CAP_SYS_ADMIN).
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("needs a small file system: mount -t tmpfs is not permitted here (%v: %s); run as root", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// FreeBytes is what may still be written on dir's file system.
func FreeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// Filler is a file that takes a disk's free space away.
type Filler struct {
	t    testing.TB
	path string
}

// NewFiller creates the file (empty) in dir.
func NewFiller(t testing.TB, dir string) *Filler {
	t.Helper()
	f := &Filler{t: t, path: filepath.Join(dir, "filler")}
	if err := os.WriteFile(f.path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Leave grows or shrinks the file so that about free bytes stay free on its file system;
// free 0 fills the disk to the last byte.
func (f *Filler) Leave(free int64) {
	f.t.Helper()
	file, err := os.OpenFile(f.path, os.O_RDWR, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer file.Close()
	size, err := file.Seek(0, io.SeekEnd)
	if err != nil {
		f.t.Fatal(err)
	}
	target := max(size+FreeBytes(f.t, filepath.Dir(f.path))-free, 0)
	if target <= size {
		if err := file.Truncate(target); err != nil {
			f.t.Fatal(err)
		}
		return
	}
	chunk := make([]byte, 64<<10)
	for size < target {
		n, err := file.Write(chunk[:min(int64(len(chunk)), target-size)])
		size += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			return
		}
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

// Remove deletes the file: its space returns.
func (f *Filler) Remove() {
	f.t.Helper()
	if err := os.Remove(f.path); err != nil {
		f.t.Fatal(err)
	}
}
