"""The cluster: a job split into shards, the job file and shard folders, merging, sbatch scripts."""
