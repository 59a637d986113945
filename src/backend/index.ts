// Public face of backend/: the object backend interface and its local-directory implementation.
export * from "./object-backend.js";
