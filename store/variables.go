package store

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Levels a variable is set at; the narrower wins at deploy: host over environment over project.
const (
	VarProject     = "project"
	VarEnvironment = "environment"
	VarHost        = "host"
)

// VarScope names where a set of variables lives: a level and the id of its project,
// environment or host.
type VarScope struct {
	Level string
	ID    int64
	// Target names the owner in the audit log, such as "project/shop/environment/prod";
	// default "<level> <id>".
	Target string
}

// column is the owner column of the scope's level.
func (s VarScope) column() (string, error) {
	switch s.Level {
	case VarProject:
		return "project_id", nil
	case VarEnvironment:
		return "environment_id", nil
	case VarHost:
		return "host_id", nil
	}
	return "", Errorf(EINTERNAL, "unknown variable level %q", s.Level)
}

// Variable is one variable at one level. A secret's Value is filled only for the deploy
// worker (ResolveVariables); what the API shows of a secret is Secret alone.
type Variable struct {
	Name   string
	Value  string
	Secret bool
	// Level is where a resolved variable came from (VarProject, ... or "ferry" for the ones
	// ferry sets itself).
	Level string
}

// VariableInput is one variable of a SetVariables call. A nil Value on a secret keeps the
// secret's stored value (a client never sees it, so cannot send it back).
type VariableInput struct {
	Value  *string `json:"value,omitempty"`
	Secret bool    `json:"secret"`
}

// MinSecretLength is the shortest secret value: shorter ones cannot be masked in logs without
// masking ordinary text too (GitLab asks the same of masked variables).
const MinSecretLength = 8

// MaxVariableValue is the longest value a variable may have.
const MaxVariableValue = 64 << 10

var variableNameRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// ValidateVariableName checks a variable name: [A-Z_][A-Z0-9_]*, at most 128 characters, and
// not starting with FERRY_ (ferry's own). The EINVALID error names the variable.
func ValidateVariableName(name string) error {
	switch {
	case !variableNameRE.MatchString(name) || len(name) > 128:
		return Errorf(EINVALID, "variable %q: a name is upper-case letters, digits and _ (not first a digit), as [A-Z_][A-Z0-9_]*, at most 128 characters", name)
	case strings.HasPrefix(name, "FERRY_"):
		return Errorf(EINVALID, "variable %q: names starting with FERRY_ are ferry's own (FERRY_VERSION, FERRY_HOST, ...)", name)
	}
	return nil
}

type variableRow struct {
	ID       int64  `db:"id"`
	Name     string `db:"name"`
	Value    string `db:"value"`
	ValueEnc string `db:"value_enc"`
	Secret   bool   `db:"secret"`
}

// ListVariables returns the variables set at scope, by name, with secrets' values left empty.
func (db *DB) ListVariables(ctx context.Context, scope VarScope) ([]Variable, error) {
	rows, err := db.variableRows(ctx, db.db, scope)
	if err != nil {
		return nil, err
	}
	out := make([]Variable, 0, len(rows))
	for _, r := range rows {
		v := Variable{Name: r.Name, Value: r.Value, Secret: r.Secret, Level: scope.Level}
		if r.Secret {
			v.Value = ""
		}
		out = append(out, v)
	}
	return out, nil
}

func (db *DB) variableRows(ctx context.Context, q queryer, scope VarScope) ([]variableRow, error) {
	col, err := scope.column()
	if err != nil {
		return nil, err
	}
	var rows []variableRow
	query := fmt.Sprintf(`SELECT id, name, value, value_enc, secret FROM variables WHERE %s = ? ORDER BY name`, col)
	if err := q.SelectContext(ctx, &rows, db.q(query), scope.ID); err != nil {
		return nil, fmt.Errorf("list %s variables: %w", scope.Level, err)
	}
	return rows, nil
}

// SetVariables replaces every variable at scope with vars. A secret without a value keeps the
// value it has; EINVALID (naming the variable) for a bad name, a value too long, or a new secret
// without a value. Secrets are sealed with the store's cipher, bound to their row.
func (db *DB) SetVariables(ctx context.Context, scope VarScope, vars map[string]VariableInput) error {
	col, err := scope.column()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(vars))
	for name, in := range vars {
		if err := ValidateVariableName(name); err != nil {
			return err
		}
		if in.Value != nil && len(*in.Value) > MaxVariableValue {
			return Errorf(EINVALID, "variable %s: the value is longer than %d bytes", name, MaxVariableValue)
		}
		if in.Secret && in.Value != nil && len(*in.Value) < MinSecretLength {
			return Errorf(EINVALID, "variable %s: a secret must be at least %d characters, so that masking it in logs hides it and nothing else", name, MinSecretLength)
		}
		if !in.Secret && in.Value == nil {
			return Errorf(EINVALID, "variable %s: give a value", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		old, err := db.variableRows(ctx, tx, scope)
		if err != nil {
			return err
		}
		kept := map[string]string{} // secrets that keep their value, in plain text
		for _, r := range old {
			if in, ok := vars[r.Name]; ok && in.Secret && in.Value == nil && r.Secret {
				plain, err := db.cipher.Open(r.ValueEnc, SecretPlace("variables", "value_enc", r.ID))
				if err != nil {
					return fmt.Errorf("variable %s: %w", r.Name, err)
				}
				kept[r.Name] = plain
			}
		}
		if _, err := tx.ExecContext(ctx, db.q(fmt.Sprintf(`DELETE FROM variables WHERE %s = ?`, col)), scope.ID); err != nil {
			return fmt.Errorf("replace %s variables: %w", scope.Level, err)
		}
		for _, name := range names {
			if err := db.insertVariable(ctx, tx, col, scope.ID, name, vars[name], kept); err != nil {
				return err
			}
		}
		return db.audit(ctx, tx, "variables.set", scope.target(), variablesDetail(old, vars))
	})
}

func (db *DB) insertVariable(ctx context.Context, tx *sqlx.Tx, col string, owner int64, name string, in VariableInput, kept map[string]string) error {
	value := ""
	if in.Value != nil {
		value = *in.Value
	} else if plain, ok := kept[name]; ok {
		value = plain
	} else {
		return Errorf(EINVALID, "variable %s: a new secret needs a value", name)
	}
	plainCol := value
	if in.Secret {
		plainCol = ""
	}
	var id int64
	err := tx.GetContext(ctx, &id, db.q(fmt.Sprintf(`INSERT INTO variables (%s, name, value, secret, updated_at) VALUES (?, ?, ?, ?, ?) RETURNING id`, col)),
		owner, name, plainCol, in.Secret, db.now())
	if err != nil {
		return formatError(fmt.Errorf("set variable %s: %w", name, err), "variable "+name)
	}
	if in.Secret {
		if _, err := db.sealInto(ctx, tx, "variables", "value_enc", id, value); err != nil {
			return fmt.Errorf("seal variable %s: %w", name, err)
		}
	}
	return nil
}

// ResolveVariables returns the variables a deployment of project to env on host sees, by
// name: the project's, overridden by the environment's, overridden by the host's, with
// secrets opened. Ferry's own (FERRY_*) are added by the caller.
func (db *DB) ResolveVariables(ctx context.Context, projectID, environmentID, hostID int64) (map[string]Variable, error) {
	out := map[string]Variable{}
	for _, scope := range []VarScope{{Level: VarProject, ID: projectID}, {Level: VarEnvironment, ID: environmentID}, {Level: VarHost, ID: hostID}} {
		if scope.ID == 0 {
			continue
		}
		rows, err := db.variableRows(ctx, db.db, scope)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			v := Variable{Name: r.Name, Value: r.Value, Secret: r.Secret, Level: scope.Level}
			if r.Secret {
				if v.Value, err = db.cipher.Open(r.ValueEnc, SecretPlace("variables", "value_enc", r.ID)); err != nil {
					return nil, fmt.Errorf("%s variable %s: %w", scope.Level, r.Name, err)
				}
			}
			out[r.Name] = v
		}
	}
	return out, nil
}

// FerryVariables are the variables ferry sets itself for a host of a deployment.
type FerryVariables struct {
	Project, Environment, Version, Host, HostAddress, DeployPath string
	// Index is the host's position in the rollout (1 for the first) of Count hosts.
	Index, Count int
	Deployment   int64
}

// Map returns them by name (FERRY_VERSION, FERRY_HOST, ...), as Variables of level "ferry".
func (f FerryVariables) Map() map[string]Variable {
	m := map[string]string{
		"FERRY_PROJECT":      f.Project,
		"FERRY_ENVIRONMENT":  f.Environment,
		"FERRY_VERSION":      f.Version,
		"FERRY_HOST":         f.Host,
		"FERRY_HOST_ADDRESS": f.HostAddress,
		"FERRY_DEPLOY_PATH":  f.DeployPath,
		"FERRY_RELEASE_DIR":  path.Join(f.DeployPath, "releases", f.Version),
		"FERRY_SHARED_DIR":   path.Join(f.DeployPath, "shared"),
		"FERRY_HOST_INDEX":   strconv.Itoa(f.Index),
		"FERRY_HOST_COUNT":   strconv.Itoa(f.Count),
	}
	if f.Deployment > 0 {
		m["FERRY_DEPLOYMENT"] = strconv.FormatInt(f.Deployment, 10)
	}
	out := make(map[string]Variable, len(m))
	for k, v := range m {
		out[k] = Variable{Name: k, Value: v, Level: "ferry"}
	}
	return out
}

// RenderedConfig is one config file rendered for a host.
type RenderedConfig struct {
	Template string `json:"template"`
	Path     string `json:"path"` // relative to the release directory
	Mode     uint32 `json:"mode"`
	Data     []byte `json:"-"`
}

// RenderConfigFiles renders every entry of deploy.config with vars; templates holds their text
// by template name. The first template that fails ends it with a *TemplateError.
func RenderConfigFiles(files []ConfigFile, templates map[string][]byte, vars map[string]string) ([]RenderedConfig, error) {
	var out []RenderedConfig
	for _, f := range files {
		text, ok := templates[f.Template]
		if !ok {
			return nil, Errorf(EINVALID, "config template %s was not read from the artifact", f.Template)
		}
		data, err := RenderConfig(f.Template, text, vars)
		if err != nil {
			return nil, err
		}
		mode, err := f.FileMode()
		if err != nil {
			return nil, err
		}
		out = append(out, RenderedConfig{Template: f.Template, Path: path.Clean(f.Path), Mode: mode, Data: data})
	}
	return out, nil
}

// MaskedVariables returns what ResolveVariables returns, without opening any secret: a
// secret's value is SecretMask. Previews render with these, so no secret, however a template
// transforms it, reaches a page.
func (db *DB) MaskedVariables(ctx context.Context, projectID, environmentID, hostID int64) (map[string]Variable, error) {
	out := map[string]Variable{}
	for _, scope := range []VarScope{{Level: VarProject, ID: projectID}, {Level: VarEnvironment, ID: environmentID}, {Level: VarHost, ID: hostID}} {
		if scope.ID == 0 {
			continue
		}
		list, err := db.ListVariables(ctx, scope)
		if err != nil {
			return nil, err
		}
		for _, v := range list {
			if v.Secret {
				v.Value = SecretMask
			}
			out[v.Name] = v
		}
	}
	return out, nil
}

func (s VarScope) target() string {
	if s.Target != "" {
		return s.Target
	}
	return fmt.Sprintf("%s %d", s.Level, s.ID)
}

// variablesDetail says which variables a SetVariables set and removed, by name only: no value,
// secret or not, reaches the audit log.
func variablesDetail(old []variableRow, vars map[string]VariableInput) string {
	var set, removed []string
	for name, in := range vars {
		if in.Secret {
			name += " (secret)"
		}
		set = append(set, name)
	}
	for _, r := range old {
		if _, ok := vars[r.Name]; !ok {
			removed = append(removed, r.Name)
		}
	}
	sort.Strings(set)
	sort.Strings(removed)
	detail := "set: " + strings.Join(set, ", ")
	if len(removed) > 0 {
		detail += "; removed: " + strings.Join(removed, ", ")
	}
	return detail
}
