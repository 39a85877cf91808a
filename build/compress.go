package build

import (
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Sampling budget of worthCompressing: up to perFile bytes of each file, sampleBudget in all.
const (
	perFile      = 256 << 10
	sampleBudget = 8 << 20
	// smallArtifact is the data below which an artifact is always compressed.
	smallArtifact = 64 << 10
)

// worthCompressing decides, before an artifact is packed, whether gzip pays for it: it
// compresses a sample (the start of each file, a few MiB in all) at the speed the packer uses
// and says yes when that saves at least a tenth. Data that is already compressed (jars, zip,
// images, minified bundles in archives) is then packed as a plain tar: gzip would only cost
// CPU on ferry and on every host that unpacks it. gzip, not zstd, because every host can
// unpack it: gzip is part of every Debian system, zstd is not.
func worthCompressing(src string) bool {
	var sample, packed countingWriter
	packed.w = io.Discard
	gz, _ := gzip.NewWriterLevel(&packed, gzip.BestSpeed)
	sample.w = gz
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || sample.n >= sampleBudget {
			return fs.SkipAll
		}
		if d.IsDir() && d.Name() == ".git" && p != src {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		io.CopyN(&sample, f, min(perFile, sampleBudget-sample.n))
		return nil
	})
	gz.Close()
	// A small artifact is mostly tar headers and padding, which gzip shrinks to nothing.
	return sample.n < smallArtifact || float64(packed.n) < 0.9*float64(sample.n)
}
