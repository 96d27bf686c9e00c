-- What a terminal did with a replacement verdict (issue 14): the data of its `fault.replaced`
-- event (JSON: replaced or restored, the failed step, what happened), kept on the fault it
-- answers, so `herd faults show` says whether the replacement took. NULL until the terminal
-- says; a later event for the same fault replaces it.
ALTER TABLE faults ADD COLUMN outcome TEXT;
