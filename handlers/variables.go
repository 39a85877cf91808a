package handlers

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// Who may read and change variables, in the words of permissions.go:
//   - project variables reach every environment: members read them; changing them needs what
//     deploying to the project's most guarded environment needs (projectWide);
//   - environment variables: members read them; changing them needs what deploying there needs
//     (projectDeploy: the production right for a protected environment);
//   - host variables: hosts are an administrator's, so only administrators change them; any
//     logged-in user reads them, as they read the host;
//   - a secret's value is never shown to anyone: it comes back as "secret": true only.
func (s *Server) registerVariables(r gin.IRouter) {
	r.GET("/projects/:project/variables", s.need(projectRead), s.getProjectVariables)
	r.PUT("/projects/:project/variables", s.need(projectWide), s.putProjectVariables)
	r.GET("/projects/:project/environments/:env/variables", s.need(projectRead), s.getEnvironmentVariables)
	r.PUT("/projects/:project/environments/:env/variables", s.need(projectDeploy), s.putEnvironmentVariables)
	r.GET("/hosts/:host/variables", s.need(loggedIn), s.getHostVariables)
	r.PUT("/hosts/:host/variables", s.need(adminOnly), s.putHostVariables)
	r.GET("/projects/:project/versions/:version/config", s.need(projectRead), s.previewConfig)
}

// variableView is one variable as the API shows it: a secret without its value.
type variableView struct {
	Value  *string `json:"value,omitempty"`
	Secret bool    `json:"secret"`
	// Level says where a variable of a preview came from: project, environment, host or ferry.
	Level string `json:"level,omitempty"`
}

func variablesView(list []store.Variable) map[string]variableView {
	out := make(map[string]variableView, len(list))
	for _, v := range list {
		view := variableView{Secret: v.Secret}
		if !v.Secret {
			value := v.Value
			view.Value = &value
		}
		out[v.Name] = view
	}
	return out
}

// anyProtectedEnvironment reports whether the loaded project has a protected environment.
func (s *Server) anyProtectedEnvironment(c *gin.Context) (bool, error) {
	envs, err := s.db.ListEnvironments(c.Request.Context(), projectOf(c).ID)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(envs, func(e *store.Environment) bool { return e.Protected }), nil
}

func (s *Server) getVariables(c *gin.Context, scope store.VarScope) {
	list, err := s.db.ListVariables(c.Request.Context(), scope)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, variablesView(list))
}

func (s *Server) putVariables(c *gin.Context, scope store.VarScope) {
	var in map[string]store.VariableInput
	if !s.bindJSON(c, &in) {
		return
	}
	if err := s.db.SetVariables(c.Request.Context(), scope, in); err != nil {
		s.fail(c, err)
		return
	}
	s.getVariables(c, scope)
}

func (s *Server) getProjectVariables(c *gin.Context) {
	s.getVariables(c, store.VarScope{Level: store.VarProject, ID: projectOf(c).ID})
}

func (s *Server) putProjectVariables(c *gin.Context) {
	p := projectOf(c)
	s.putVariables(c, store.VarScope{Level: store.VarProject, ID: p.ID, Target: "project/" + p.Name})
}

func (s *Server) routeEnvironment(c *gin.Context) (*store.Environment, bool) {
	if e := environmentOf(c); e != nil {
		return e, true
	}
	e, err := s.db.GetEnvironment(c.Request.Context(), projectOf(c).ID, c.Param("env"))
	if err != nil {
		s.fail(c, err)
		return nil, false
	}
	return e, true
}

func (s *Server) getEnvironmentVariables(c *gin.Context) {
	if e, ok := s.routeEnvironment(c); ok {
		s.getVariables(c, store.VarScope{Level: store.VarEnvironment, ID: e.ID})
	}
}

func (s *Server) putEnvironmentVariables(c *gin.Context) {
	if e, ok := s.routeEnvironment(c); ok {
		s.putVariables(c, store.VarScope{Level: store.VarEnvironment, ID: e.ID, Target: "project/" + projectOf(c).Name + "/environment/" + e.Name})
	}
}

func (s *Server) routeHost(c *gin.Context) (*store.Host, bool) {
	h, err := s.db.GetHost(c.Request.Context(), c.Param("host"))
	if err != nil {
		s.fail(c, err)
		return nil, false
	}
	return h, true
}

func (s *Server) getHostVariables(c *gin.Context) {
	if h, ok := s.routeHost(c); ok {
		s.getVariables(c, store.VarScope{Level: store.VarHost, ID: h.ID})
	}
}

func (s *Server) putHostVariables(c *gin.Context) {
	if h, ok := s.routeHost(c); ok {
		s.putVariables(c, store.VarScope{Level: store.VarHost, ID: h.ID, Target: "host/" + h.Name})
	}
}

// configPreview is the rendered config of one host, as GET .../config shows it.
type configPreview struct {
	Version     string                  `json:"version"`
	Environment string                  `json:"environment"`
	Host        string                  `json:"host"`
	Files       []configPreviewFile     `json:"files"`
	Variables   map[string]variableView `json:"variables"`
	Hooks       store.Hooks             `json:"hooks"`
}

type configPreviewFile struct {
	Path     string `json:"path"`
	Template string `json:"template"`
	Mode     string `json:"mode"`
	Content  string `json:"content"`
}

// previewConfig renders a version's config templates for one host of an environment (the
// first when no host is named), with every secret's value replaced by store.SecretMask before
// rendering, so no transformation in a template can show a secret.
func (s *Server) previewConfig(c *gin.Context) {
	out, err := s.renderPreview(c.Request.Context(), projectOf(c), c.Param("version"), c.Query("environment"), c.Query("host"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) renderPreview(ctx context.Context, p *store.Project, version, envName, hostName string) (*configPreview, error) {
	if envName == "" {
		return nil, store.Errorf(store.EINVALID, "name the environment: ?environment=<name>")
	}
	v, err := s.versionByNameOrID(ctx, p, version)
	if err != nil {
		return nil, err
	}
	env, err := s.db.GetEnvironment(ctx, p.ID, envName)
	if err != nil {
		return nil, err
	}
	if hostName == "" && len(env.Hosts) > 0 {
		hostName = env.Hosts[0]
	}
	if !slices.Contains(env.Hosts, hostName) {
		return nil, store.Errorf(store.EINVALID, "host %q is not in environment %s (its hosts: %v)", hostName, env.Name, env.Hosts)
	}
	host, err := s.db.GetHost(ctx, hostName)
	if err != nil {
		return nil, err
	}
	pipeline, err := store.ParsePipeline([]byte(v.Pipeline))
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "the .ferry.yml of version %s: %v", v.Name, err)
	}
	vars, err := s.db.MaskedVariables(ctx, p.ID, env.ID, host.ID)
	if err != nil {
		return nil, err
	}
	index := slices.Index(env.Hosts, hostName) + 1
	for k, fv := range (store.FerryVariables{Project: p.Name, Environment: env.Name, Version: v.Name, Host: host.Name,
		HostAddress: host.Address, DeployPath: pipeline.Deploy.Path, Index: index, Count: len(env.Hosts)}).Map() {
		vars[k] = fv
	}
	files, err := s.renderVersionConfig(ctx, v, pipeline.Deploy.Config, vars)
	if err != nil {
		return nil, err
	}
	out := &configPreview{Version: v.Name, Environment: env.Name, Host: host.Name, Files: files,
		Variables: map[string]variableView{}, Hooks: pipeline.Deploy.Hooks}
	for name, vr := range vars {
		view := variableView{Secret: vr.Secret, Level: vr.Level}
		if !vr.Secret {
			value := vr.Value
			view.Value = &value
		}
		out.Variables[name] = view
	}
	return out, nil
}

func (s *Server) renderVersionConfig(ctx context.Context, v *store.Version, config []store.ConfigFile, vars map[string]store.Variable) ([]configPreviewFile, error) {
	files := []configPreviewFile{}
	if len(config) == 0 {
		return files, nil
	}
	names := make([]string, len(config))
	for i, f := range config {
		names[i] = f.Template
	}
	r, err := s.openArtifact(ctx, v)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	templates, err := store.ReadArtifactFiles(r, names)
	if err != nil {
		return nil, err
	}
	env := make(map[string]string, len(vars))
	for k, vr := range vars {
		env[k] = vr.Value
	}
	rendered, err := store.RenderConfigFiles(config, templates, env)
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "%v", err)
	}
	for _, f := range rendered {
		files = append(files, configPreviewFile{Path: f.Path, Template: f.Template, Mode: fmt.Sprintf("%04o", f.Mode), Content: string(f.Data)})
	}
	return files, nil
}

// versionByNameOrID finds a kept version of p by name, or by id as the other version routes
// name it.
func (s *Server) versionByNameOrID(ctx context.Context, p *store.Project, version string) (*store.Version, error) {
	v, err := s.db.GetVersionByName(ctx, p.ID, version)
	if !store.IsNotFound(err) {
		return v, err
	}
	id, perr := strconv.ParseInt(version, 10, 64)
	if perr != nil {
		return nil, err
	}
	byID, gerr := s.db.GetVersion(ctx, id)
	if gerr != nil || byID.ProjectID != p.ID || byID.DeletedAt != nil {
		return nil, err
	}
	return byID, nil
}
