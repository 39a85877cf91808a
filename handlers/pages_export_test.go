package handlers

// Page helpers, exported for the tests of package handlers_test.
var (
	CommitURL      = commitURL
	LangFromAccept = langFromAccept
	Median         = median
)
