"""The web app's pages, one module each, as datasette keeps its views: the runs table (:mod:`.runs`), one run
(:mod:`.run`), the JSON and binary data a run page's scripts fetch per layer (:mod:`.api`), the comparison of runs
(:mod:`.compare`), an experiment's groups (:mod:`.experiment`) and the read-only SQL page (:mod:`.query`), over
what they share (:mod:`.base`). Each module's ``routes(views)`` lists its URLs."""
