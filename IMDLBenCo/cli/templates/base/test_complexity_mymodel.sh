# Count the parameters, FLOPs and MACs of the model (one process is enough).
# Run:  sh test_complexity_mymodel.sh   (result: complexity.json in base_dir)
base_dir="./complexity_dir"
mkdir -p ${base_dir}

python ./test_complexity.py \
    --model MyModel \
    --MyModel_Customized_param 100 \
    --pre_trained_weights "/path/to/pretrained_weights.pth" \
    --test_batch_size 1 \
    --image_size 512 \
    --if_resizing \
    --output_dir ${base_dir}/ \
2> ${base_dir}/error.log 1>${base_dir}/logs.log
status=$?
if [ $status -ne 0 ]; then
    echo "test_complexity_mymodel.sh: counting the complexity failed (exit status $status). The last lines of ${base_dir}/error.log:" >&2
    { sed "/failed (exitcode: /,\$d" "${base_dir}/error.log" | grep . || cat "${base_dir}/error.log"; } | tail -n 25 >&2
    echo "(full output: ${base_dir}/logs.log and ${base_dir}/error.log)" >&2
else
    echo "test_complexity_mymodel.sh: counting the complexity finished. Results in ${base_dir}/: complexity.json (parameters, FLOPs, MACs); console output in ${base_dir}/logs.log"
fi
exit $status
