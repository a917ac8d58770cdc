# Class-activation maps (Grad-CAM) of a dataset: cam/*.png (heat maps, original size),
# cam/*_overlay.jpg and cam.json. The same --output_dir as test_save_image_mymodel.sh puts cam/
# next to pred/, and `benco report ./save_img_dir` shows the overlays beside the predictions.
# --target_layer: a name from model.named_modules() (default: chosen automatically, recorded in cam.json).
# Needs the grad-cam package: pip install grad-cam
# Run:  sh test_cam_mymodel.sh
base_dir="./save_img_dir"
mkdir -p ${base_dir}

CUDA_VISIBLE_DEVICES=0 \
torchrun \
    --standalone \
    --nnodes=1 \
    --nproc_per_node=1 \
./test_cam.py \
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
    --cam_method gradcam \
    --cam_target mask \
    --output_dir ${base_dir}/ \
    --log_dir ${base_dir}/ \
2> ${base_dir}/cam_error.log 1>${base_dir}/cam_logs.log
status=$?
if [ $status -ne 0 ]; then
    echo "test_cam_mymodel.sh: the class-activation maps failed (exit status $status). The last lines of ${base_dir}/cam_error.log:" >&2
    { sed "/failed (exitcode: /,\$d" "${base_dir}/cam_error.log" | grep . || cat "${base_dir}/cam_error.log"; } | tail -n 25 >&2
    echo "(full output: ${base_dir}/cam_logs.log and ${base_dir}/cam_error.log)" >&2
else
    echo "test_cam_mymodel.sh: the class-activation maps finished. Results in ${base_dir}/: cam/<name>.png, cam/<name>_overlay.jpg and cam.json; console output in ${base_dir}/cam_logs.log"
fi
exit $status
