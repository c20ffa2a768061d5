"""isp_tf.train"""
