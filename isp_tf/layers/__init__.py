"""isp_tf.layers"""
