# Save the predicted masks (pred/*.png, original size) and labels (pred_label.json) of a dataset.
# --test_data_path may be a ManiDataset folder, a JsonDataset file or a plain folder of images.
# Run:  sh test_save_image_mymodel.sh
base_dir="./save_img_dir"
mkdir -p ${base_dir}

CUDA_VISIBLE_DEVICES=0 \
torchrun \
    --standalone \
    --nnodes=1 \
    --nproc_per_node=1 \
./test_save_images.py \
    --model MyModel \
    --MyModel_Customized_param 100 \
    --pre_trained_weights "/path/to/pretrained_weights.pth" \
    --world_size 1 \
    --test_data_path "/mnt/data0/public_datasets/IML/CASIA1.0" \
    --checkpoint_path "./output_dir/checkpoint-best.pth" \
    --test_batch_size 2 \
    --num_workers 4 \
    --image_size 512 \
    --if_resizing \
    --output_dir ${base_dir}/ \
    --log_dir ${base_dir}/ \
2> ${base_dir}/error.log 1>${base_dir}/logs.log
status=$?
if [ $status -ne 0 ]; then
    echo "test_save_image_mymodel.sh: saving the predictions failed (exit status $status). The last lines of ${base_dir}/error.log:" >&2
    { sed "/failed (exitcode: /,\$d" "${base_dir}/error.log" | grep . || cat "${base_dir}/error.log"; } | tail -n 25 >&2
    echo "(full output: ${base_dir}/logs.log and ${base_dir}/error.log)" >&2
else
    echo "test_save_image_mymodel.sh: saving the predictions finished. Results in ${base_dir}/: pred/<name>.png (masks at the original size), pred_label.json and predictions.json; console output in ${base_dir}/logs.log"
fi
exit $status
