// A ring of coloured spheres turning once over the animation (clock 0..1).
#version 3.7;
#include "colors.inc"
global_settings { assumed_gamma 1.0 }
camera { location <0, 4, -9> look_at <0, 0.5, 0> angle 40 }
light_source { <-5, 10, -8> color White }
light_source { <6, 6, -3> color rgb 0.4 }
plane { y, -1 pigment { checker color rgb <0.85, 0.85, 0.9> color rgb <0.25, 0.3, 0.45> scale 1.5 }
        finish { reflection 0.15 } }
#declare N = 8;
#declare I = 0;
#while (I < N)
  sphere { <2.4, 0, 0>, 0.55
    pigment { color CHSL2RGB(<360 * I / N, 0.9, 0.55>) }
    finish { specular 0.6 roughness 0.02 reflection 0.2 }
    rotate y * (360 * I / N + 360 * clock) }
  #declare I = I + 1;
#end
sphere { <0, 0.2, 0>, 1.0 pigment { color rgb <0.95, 0.95, 0.95> } finish { reflection 0.45 specular 0.8 } }
