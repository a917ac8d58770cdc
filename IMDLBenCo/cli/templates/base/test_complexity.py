"""Count the parameters, FLOPs and MACs of a model (written by `benco init`; run it through
test_complexity_mymodel.sh). Result: complexity.json in --output_dir. Use --test_batch_size 1
to compare models (FLOPs grow with the batch).

The work is done by IMDLBenCo.engine.complexity_main.
"""

from IMDLBenCo.engine import complexity_main

from mymodel import MyModel  # noqa: F401  TODO: import your model here; the import registers it for --model

if __name__ == "__main__":
    complexity_main()
