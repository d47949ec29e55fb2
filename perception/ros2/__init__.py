"""ROS 2 in and out without a ROS installation (docs/ros2.md).

- `bag`: rosbag2 recordings (MCAP storage, a single .mcap or the bag directory, split, zstd per file or
  message) read with the `rosbags` library, which also decodes their CDR;
- `images` / `poses`: a ROS 2 Image / CompressedImage as our RGB frames, odometry / PoseStamped / TF as `Pose`;
- `cameras`: the `rosbag` and `ros2` camera kinds of `pipeline.cameras` (the capture node reads them);
- `dds`: a Cyclone DDS participant with ROS 2's topic and type names and QoS; `interfaces`: the IDL types;
- perception/nodes/ros2_out.py: captions, events and watch crossings out to a ROS 2 graph.

Importing this package is cheap: rosbags and cyclonedds are imported where they are used.
"""
