"""The paper in miniature: generated math/code tasks, an offline text corpus, a trained tokenizer and a tiny Qwen2
config, all built under {run_dir}/setup/ by `posttrain.mini.build.build_mini_setup` (the pipeline's `mini_setup` stage)."""
