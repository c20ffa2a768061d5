"""isp_tf.infer"""
