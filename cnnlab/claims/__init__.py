"""Claims, statistics over seeds, verdicts and reports."""

# Names the store's reproductions are found by, shared by the modules that write them (reproduce, sources) and
# those that carry them between stores (portable, evidence), so none of those needs another to know them.
EXPERIMENT = "cnnlab-reproductions"
DESIGN_TAG = "cnnlab.design"  # [min_seeds, max_seeds, sequential] of the reproduction that judged its seeds
CELL_TAG = "cnnlab.sources_cell"  # a variance-by-source run's cell of seeds (cnnlab.claims.sources)
