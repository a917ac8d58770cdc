# Test every checkpoint-<epoch>.pth of --checkpoint_path on every set of test_datasets.json.
# Run:  sh test_mymodel.sh   (results: log.txt, summary.json, summary.csv, TensorBoard in base_dir)
base_dir="./eval_dir"
mkdir -p ${base_dir}

CUDA_VISIBLE_DEVICES=0 \
torchrun \
    --standalone \
    --nnodes=1 \
    --nproc_per_node=1 \
./test.py \
    --model MyModel \
    --MyModel_Customized_param 100 \
    --pre_trained_weights "/path/to/pretrained_weights.pth" \
    --world_size 1 \
    --test_data_json "./test_datasets.json" \
    --checkpoint_path "./output_dir/" \
    --test_batch_size 2 \
    --num_workers 4 \
    --image_size 512 \
    --if_resizing \
    --output_dir ${base_dir}/ \
    --log_dir ${base_dir}/ \
2> ${base_dir}/error.log 1>${base_dir}/logs.log
status=$?
if [ $status -ne 0 ]; then
    echo "test_mymodel.sh: testing failed (exit status $status). The last lines of ${base_dir}/error.log:" >&2
    { sed "/failed (exitcode: /,\$d" "${base_dir}/error.log" | grep . || cat "${base_dir}/error.log"; } | tail -n 25 >&2
    echo "(full output: ${base_dir}/logs.log and ${base_dir}/error.log)" >&2
else
    echo "test_mymodel.sh: testing finished. Results in ${base_dir}/: summary.json, summary.csv and log.txt (every checkpoint x every test set); console output in ${base_dir}/logs.log"
fi
exit $status
