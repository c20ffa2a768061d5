"""isp_tf.losses"""
