package deploy

// SetTrashRemover makes script, until restore is called, the one that removes the trash of
// pruned releases on a host (run detached, with the trash directories as its arguments): a
// test holds the removal with it, to see that the rollout does not wait for it.
func SetTrashRemover(script string) (restore func()) {
	old := trashRemover
	trashRemover = script
	return func() { trashRemover = old }
}
