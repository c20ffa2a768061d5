"""isp_tf.data"""
