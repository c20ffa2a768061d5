"""isp_tf.export"""
