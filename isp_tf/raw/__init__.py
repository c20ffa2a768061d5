"""isp_tf.raw"""
