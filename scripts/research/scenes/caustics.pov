// httpov photon research: a glass sphere and a glass cylinder casting caustics.
#version 3.7;
global_settings {
  assumed_gamma 1.0
  max_trace_level 10
  photons { spacing 0.004 autostop 0 jitter 0.4 }
}
camera { location <0, 3.2, -5> look_at <0, 0.4, 0> angle 45 }
light_source { <4, 8, -3> color rgb 1.3 photons { refraction on reflection on } }
light_source { <-6, 6, -8> color rgb 0.3 photons { refraction off reflection off } }
plane { y, 0 pigment { checker color rgb 0.75 color rgb 0.6 scale 0.5 } finish { diffuse 0.6 ambient 0.02 } }
#declare Glass = material {
  texture { pigment { color rgbf <0.95, 1.0, 0.95, 0.95> } finish { specular 0.6 roughness 0.005 reflection 0.05 ambient 0 diffuse 0 } }
  interior { ior 1.5 }
}
sphere { <-0.6, 0.7, 0>, 0.7 material { Glass } photons { target refraction on reflection on } }
cylinder { <1.1, 0, 0.4>, <1.1, 1.2, 0.4>, 0.4 material { Glass } photons { target refraction on reflection on } }
