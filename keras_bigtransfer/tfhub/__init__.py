"""TensorFlow only: TF Hub SavedModel export and import."""
