# Train MyModel. Edit the options, then run:  sh train_mymodel.sh
# Output (checkpoints, log.txt, TensorBoard) goes to base_dir; console output to logs.log / error.log.
# On a machine without GPU the same command runs on the CPU (set --nproc_per_node to the processes you want).
base_dir="./output_dir"
mkdir -p ${base_dir}

CUDA_VISIBLE_DEVICES=0 \
torchrun \
    --standalone \
    --nnodes=1 \
    --nproc_per_node=1 \
./train.py \
    --model MyModel \
    --MyModel_Customized_param 100 \
    --pre_trained_weights "/path/to/pretrained_weights.pth" \
    --world_size 1 \
    --batch_size 2 \
    --test_batch_size 2 \
    --num_workers 4 \
    --data_path "/mnt/data0/public_datasets/IML/CASIA2.0" \
    --epochs 200 \
    --lr 1e-4 \
    --image_size 512 \
    --if_resizing \
    --min_lr 5e-7 \
    --weight_decay 0.05 \
    --edge_mask_width 7 \
    --test_data_path "/mnt/data0/public_datasets/IML/CASIA1.0" \
    --warmup_epochs 2 \
    --output_dir ${base_dir}/ \
    --log_dir ${base_dir}/ \
    --accum_iter 8 \
    --seed 42 \
    --test_period 4 \
2> ${base_dir}/error.log 1>${base_dir}/logs.log
status=$?
if [ $status -ne 0 ]; then
    echo "train_mymodel.sh: training failed (exit status $status). The last lines of ${base_dir}/error.log:" >&2
    { sed "/failed (exitcode: /,\$d" "${base_dir}/error.log" | grep . || cat "${base_dir}/error.log"; } | tail -n 25 >&2
    echo "(full output: ${base_dir}/logs.log and ${base_dir}/error.log)" >&2
else
    echo "train_mymodel.sh: training finished. Results in ${base_dir}/: checkpoint-<epoch>.pth, checkpoint-best.pth, log.txt (one line per epoch) and TensorBoard files; console output in ${base_dir}/logs.log"
fi
exit $status
