package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"ferry/store"
)

// HostExtras is what a deployment adds to the release on one host besides the artifact: the
// config files rendered for that host, and the variables its hooks see. A nil *HostExtras
// adds nothing.
type HostExtras struct {
	// Files are written into the release directory after the upload, before anything stops.
	Files []store.RenderedConfig
	// Env is the hooks' environment: the variables (secrets too) and ferry's own.
	Env map[string]string
	// Secrets are the secret values, masked in every log line of the host.
	Secrets []string
	// Sources says where each variable came from, by name only ("PORT (host), ..."), for the log.
	Sources string
}

// RenderHostConfig renders spec's config templates (their text in templates, by template name)
// with vars, for one host. It fails with a *store.TemplateError naming the template, line and
// variable when a template refers to a variable that is not set, before anything on the host
// is touched.
func RenderHostConfig(spec store.DeploySpec, templates map[string][]byte, vars map[string]store.Variable) (*HostExtras, error) {
	x := &HostExtras{Env: make(map[string]string, len(vars))}
	for name, v := range vars {
		x.Env[name] = v.Value
		if v.Secret && v.Value != "" {
			x.Secrets = append(x.Secrets, v.Value)
		}
	}
	x.Sources = variableSources(vars)
	var err error
	if x.Files, err = store.RenderConfigFiles(spec.Config, templates, x.Env); err != nil {
		// A helper's error may quote a value (add: "..." is not a whole number): never a secret.
		var te *store.TemplateError
		if errors.As(err, &te) {
			masked := *te
			masked.Message = store.MaskSecrets(te.Message, x.Secrets)
			return nil, &masked
		}
		return nil, errors.New(store.MaskSecrets(err.Error(), x.Secrets))
	}
	return x, nil
}

// variableSources lists the variables that are not ferry's own with the level each came from.
func variableSources(vars map[string]store.Variable) string {
	var parts []string
	for name, v := range vars {
		if v.Level == "ferry" {
			continue
		}
		kind := v.Level
		if v.Secret {
			kind += ", secret"
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", name, kind))
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// masked returns ev with every secret of x masked in its log lines.
func (x *HostExtras) masked(ev HostEvents) HostEvents {
	if x == nil || len(x.Secrets) == 0 || ev.Log == nil {
		return ev
	}
	log := ev.Log
	ev.Log = func(stream, line string) { log(stream, store.MaskSecrets(line, x.Secrets)) }
	return ev
}

// writeConfig writes the rendered files into the release directory of version: each to a temp
// name with its mode, then renamed over the file, so a running release never reads half a file.
func (c *Conn) writeConfig(l layout, version string, files []store.RenderedConfig, say func(format string, args ...any)) error {
	if len(files) == 0 {
		return nil
	}
	client, err := c.SFTP()
	if err != nil {
		return err
	}
	dir := l.release(version)
	for _, f := range files {
		dest := path.Join(dir, f.Path)
		if err := client.MkdirAll(path.Dir(dest)); err != nil {
			return fmt.Errorf("config %s: create %s on %s: %w", f.Path, path.Dir(dest), c.target.label(), err)
		}
		tmp := path.Join(path.Dir(dest), ".ferry-config-"+path.Base(dest)+".tmp")
		w, err := client.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return fmt.Errorf("config %s: write %s on %s: %w", f.Path, tmp, c.target.label(), err)
		}
		// Mode first, so a secret is never readable by others, not even for a moment.
		err = w.Chmod(os.FileMode(f.Mode))
		if err == nil {
			_, err = w.Write(f.Data)
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = client.PosixRename(tmp, dest)
		}
		if err != nil {
			client.Remove(tmp)
			return fmt.Errorf("config %s: write %s on %s: %w", f.Path, dest, c.target.label(), err)
		}
		say("rendered %s from %s into %s (mode %04o, %s)", f.Path, f.Template, dir, f.Mode, byteCount(int64(len(f.Data))))
	}
	return nil
}

// deployConfig is what a deployment run reads once for the config and hooks of every host:
// the templates from the artifact and whether the once hook failed.
type deployConfig struct {
	mu        sync.Mutex
	loaded    bool
	templates map[string][]byte
	err       error // the templates could not be read, or the once hook failed: every host fails
}

// loadTemplates reads the config templates of the release from its artifact, once per run.
func (r *deploymentRun) loadTemplates() (map[string][]byte, error) {
	c := r.config
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded {
		return c.templates, c.err
	}
	c.loaded = true
	if len(r.spec.Config) == 0 {
		return nil, c.err
	}
	names := make([]string, 0, len(r.spec.Config))
	for _, f := range r.spec.Config {
		names = append(names, f.Template)
	}
	file, err := os.Open(r.rel.Artifact)
	if err != nil {
		c.err = fmt.Errorf("read the config templates from the artifact: %w", err)
		return nil, c.err
	}
	defer file.Close()
	c.templates, err = store.ReadArtifactFiles(file, names)
	if err != nil {
		c.err = fmt.Errorf("version %s: %s", r.rel.Version, store.ErrorMessage(err))
	}
	return c.templates, c.err
}

// hostExtras resolves the variables of one host (project, environment, host, then ferry's own)
// and renders its config; an unknown variable fails the host before it is contacted.
func (r *deploymentRun) hostExtras(ctx context.Context, j *hostJob) (*HostExtras, error) {
	templates, err := r.loadTemplates()
	if err != nil {
		return nil, err
	}
	vars, err := r.w.db.ResolveVariables(ctx, r.d.ProjectID, r.d.EnvironmentID, j.step.HostID)
	if err != nil {
		return nil, fmt.Errorf("load the variables of %s: %w", j.step.Host, err)
	}
	for k, v := range r.ferryVariables(j).Map() {
		vars[k] = v
	}
	x, err := RenderHostConfig(r.spec, templates, vars)
	if err != nil {
		return nil, fmt.Errorf("%s (nothing on %s was changed)", err, j.step.Host)
	}
	return x, nil
}

func (r *deploymentRun) ferryVariables(j *hostJob) store.FerryVariables {
	index := 0
	for i, h := range r.hosts {
		if h == j {
			index = i + 1
		}
	}
	return store.FerryVariables{Project: r.d.Project, Environment: r.d.Environment, Version: r.rel.Version,
		Host: j.step.Host, HostAddress: j.target.Address, DeployPath: r.spec.Path,
		Index: index, Count: len(r.hosts), Deployment: r.d.ID}
}

// extrasEnv is the variables of x, nil for none.
func extrasEnv(x *HostExtras) map[string]string {
	if x == nil {
		return nil
	}
	return x.Env
}
