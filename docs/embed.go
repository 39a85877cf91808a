// Package docs holds ferry's documentation; the API description is embedded so that a running
// ferry serves the one it was built with.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml, the description of the JSON API.
//
//go:embed openapi.yaml
var OpenAPI []byte
