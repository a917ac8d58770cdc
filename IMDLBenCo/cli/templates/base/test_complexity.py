"""Count the parameters, FLOPs and MACs of a model (written by `benco init`; run it through
test_complexity_mymodel.sh). Result: complexity.json in --output_dir. Use --test_batch_size 1
to compare models (FLOPs grow with the batch).

The work is done by IMDLBenCo.engine.complexity_main.
"""

import mymodel  # noqa: F401  TODO: the module that defines your model (importing it registers every model in it for --model)

from IMDLBenCo.engine import complexity_main

if __name__ == "__main__":
    complexity_main()
