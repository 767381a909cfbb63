"""What the ALFRED-style worlds (household, ALFWorld) share: the text they speak (``text``), the
object catalogue and its location priors (``catalog``), the privileged-state description
(``privileged``), the planner and the searcher (``experts``), and the privileged teacher with
realizable reasons (``teacher``)."""
