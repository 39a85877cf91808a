// Package migrations holds ferry's database schema as numbered SQL files, one set per dialect.
// The store applies them in order at start, each in its own transaction.
package migrations

import "embed"

// FS holds postgres/NNNN_name.sql and sqlite/NNNN_name.sql.
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
